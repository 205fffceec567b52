"""LC002: in a distributed script, only the main process writes the adapter."""

from __future__ import annotations

import libcst as cst

from lora_codemod.analysis.index import Located, ModuleIndex
from lora_codemod.analysis.lora import Branch
from lora_codemod.analysis.names import dotted_name, last_part
from lora_codemod.analysis.saves import SaveInBlock, Verdict
from lora_codemod.findings import Status
from lora_codemod.rules.base import Example, Rule, RuleContext

_COLLECTIVES = {"barrier", "wait_for_everyone", "get_state_dict", "push_to_hub"}


def collective_name(call: Located, index: ModuleIndex) -> str | None:
    """The name of a call every rank must make (`trainer.save_model`, `dist.barrier`, ...)."""
    node = call.node
    assert isinstance(node, cst.Call)
    func = node.func
    method = func.attr.value if isinstance(func, cst.Attribute) else (dotted_name(func) or "")
    if method in _COLLECTIVES:
        return method
    if method == "save_model" and isinstance(func, cst.Attribute):
        receiver = dotted_name(func.value) or ""
        if receiver in index.trainer_names or last_part(receiver).lower().endswith("trainer"):
            return f"{receiver}.save_model"
    return None


class RankZeroGuard(Rule):
    code = "LC002"
    name = "rank-zero-adapter-save"
    summary = "In a distributed script, write the adapter from the main process only"
    doc = """\
## What it does
In a script that runs as several processes (it reads `LOCAL_RANK`/`RANK`/`WORLD_SIZE`, imports
`torch.distributed`, passes `ddp_*`/`deepspeed=`/`fsdp=` to TrainingArguments, mentions
`torchrun`, ...), wraps a LoRA block that saves the adapter in
`if trainer.is_world_process_zero():`, unless the save is already under a rank-zero guard.

## Why is this bad?
Under torchrun every process runs the same script, so every rank calls `save_pretrained` on the
same directory. Ranks read `README.md` while another writes it, and under FSDP the ranks hold
different data: corrupted or half-written adapter files have been reported.

## Example
```python
local_rank = int(os.environ["LOCAL_RANK"])
...
trainer.train()
if args.use_lora:
    model.save_pretrained(lora_dir)
```

## Fix
```python
if trainer.is_world_process_zero():
    if args.use_lora:
        model_to_save = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
        model_to_save.save_pretrained(lora_dir)
```
The guard goes around the LoRA `if` when it has no `elif`/`else`; otherwise inside its body, so
the other branches keep running on every rank. Comments above the `if` stay above the guard.

## When it does not apply
Scripts with no distributed signal. Saves already under a guard at any depth
(`trainer.is_world_process_zero()`, `accelerator.is_main_process`, `args.should_save`,
`local_rank in (-1, 0)`, `dist.get_rank() == 0`, ...) or passing `is_main_process=`. A LoRA block
that also calls `trainer.save_model()`, `barrier()`, `wait_for_everyone()`, `get_state_dict()` or
`push_to_hub()` is reported for review and not wrapped: those must run on every rank (under
DeepSpeed ZeRO-3 and FSDP, `save_model` gathers weights from all ranks and hangs on rank 0 alone).
"""
    examples = (
        Example(
            title="every rank saves in a torchrun script",
            before="""\
local_rank = int(os.environ["LOCAL_RANK"])
trainer = Trainer(model=model, args=training_args)
if args.use_lora:
    trainer.model.save_pretrained(lora_dir)
""",
            after="""\
local_rank = int(os.environ["LOCAL_RANK"])
trainer = Trainer(model=model, args=training_args)
if trainer.is_world_process_zero():
    if args.use_lora:
        trainer.model.save_pretrained(lora_dir)
""",
        ),
        Example(
            title="already guarded",
            before="""\
local_rank = int(os.environ["LOCAL_RANK"])
trainer = Trainer(model=model, args=training_args)
if local_rank in (-1, 0) and args.use_lora:
    trainer.model.save_pretrained(lora_dir)
""",
        ),
        Example(
            title="not a distributed script",
            before="""\
trainer = Trainer(model=model, args=training_args)
if args.use_lora:
    trainer.model.save_pretrained(lora_dir)
""",
        ),
    )

    def check(self, ctx: RuleContext) -> None:
        index = ctx.index
        if not index.signals:
            return
        groups: dict[int, list[SaveInBlock]] = {}
        for save in ctx.saves:
            if save.verdict in (Verdict.FIXABLE, Verdict.ALREADY_FIXED) and save.trainer:
                groups.setdefault(id(save.owner), []).append(save)
        signal = index.signals[0][0]
        for group in groups.values():
            unguarded = [s for s in group if index.guard_of(s.at) is None and not s.main_process_only]
            if not unguarded:
                continue
            save = unguarded[0]
            trainer = save.trainer
            assert trainer is not None
            anchor: cst.CSTNode = save.block_if if save.branch is Branch.BODY else save.owner
            collectives = sorted({
                name for call in index.collective_calls
                if call.encloses(save.block) and (name := collective_name(call, index))
            })
            message = f"every rank writes the adapter (distributed script: {signal})"
            if collectives:
                reason = f"the block also calls {', '.join(collectives)}(), which every rank must run"
                ctx.report(self.code, anchor, message, Status.REVIEW, reason)
                continue
            test = f"{trainer}.is_world_process_zero()"
            if save.branch is Branch.BODY and save.block_if.orelse is None and id(save.block_if) not in index.is_elif:
                ctx.plan.wrap_if(save.block_if, test)
            else:
                ctx.plan.wrap_block_body(save.owner, test)
            ctx.report(self.code, anchor, message, Status.FIXED)


RULE = RankZeroGuard()
