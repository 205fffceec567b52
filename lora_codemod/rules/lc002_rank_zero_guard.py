"""LC002: in a distributed script, only the main process writes the adapter."""

from __future__ import annotations

import libcst as cst

from lora_codemod.analysis.distributed import signal_for
from lora_codemod.analysis.lora import Branch
from lora_codemod.analysis.saves import Save
from lora_codemod.findings import Status
from lora_codemod.rules.base import Example, Rule, RuleContext
from lora_codemod.rules.guarding import saving_runs, unsafe



class RankZeroGuard(Rule):
    code = "LC002"
    name = "rank-zero-adapter-save"
    summary = "In a distributed script, write the adapter from the main process only"
    doc = """\
## What it does
In a script that runs as several processes (it reads `LOCAL_RANK`/`RANK`/`WORLD_SIZE`, imports
`torch.distributed`, passes `ddp_*`/`deepspeed=`/`fsdp=` to TrainingArguments, reads
`local_rank`, mentions `torchrun`/`accelerate launch`, ...), guards an adapter save that no
rank-zero test encloses with `if trainer.is_world_process_zero():`. The guard encloses only
statements that are safe to move: no collective call (`trainer.save_model()`, a ZeRO-3 gather
such as LLaVA's `get_peft_state_maybe_zero_3`, `barrier()`), and no assignment to a name that
is read after the guard.

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
    model_to_save = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    model_to_save.save_pretrained(lora_dir)
```

## Fix
```python
if trainer.is_world_process_zero():
    if args.use_lora:
        model_to_save = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
        model_to_save.save_pretrained(lora_dir)
```
Where the guard goes: around the LoRA `if` when it has no `elif`/`else` and all of it is safe to
move; inside the LoRA block around all of its statements when the `if` has other branches;
otherwise around each run of consecutive saving statements of the block, leaving gathers and
assignments on every rank; and around the save statement itself outside LoRA blocks. Comments
above a guarded statement stay above the guard.

## When it does not apply
Scripts with no distributed signal. A pytest test (a function `test*`, or a method of a class
`Test*` or of a `unittest.TestCase`, in a module `test_*.py` or `*_test.py`) runs in pytest's one
process: what the module imports for its other tests (`import torch.distributed`) does not make
its saves distributed; its own body's signals (`init_process_group`, `LOCAL_RANK`, a `torchrun`
command) still do. Saves already under a rank-zero test at any depth (decided
by evaluating the test for ranks -1, 0, 1 and 2: `local_rank == 0 or local_rank == -1`,
`not dist.is_initialized() or dist.get_rank() == 0`, `if not local_rank:`, `should_save`, ...) or
passing `is_main_process=`. A save that shares its statement with a collective call or with an
assignment read later is reported for review and not guarded.
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
            title="a ZeRO-3 gather stays on every rank; only the saves are guarded",
            before="""\
import deepspeed


def gather_lora(named_params):
    with deepspeed.zero.GatheredParameters([p for _, p in named_params]):
        return {k: v.cpu() for k, v in named_params}


trainer = Trainer(model=model, args=training_args, deepspeed="ds_z3.json")
if training_args.lora_enable:
    state_dict = gather_lora(model.named_parameters())
    trainer.model.save_pretrained(out_dir, state_dict=state_dict)
""",
            after="""\
import deepspeed


def gather_lora(named_params):
    with deepspeed.zero.GatheredParameters([p for _, p in named_params]):
        return {k: v.cpu() for k, v in named_params}


trainer = Trainer(model=model, args=training_args, deepspeed="ds_z3.json")
if training_args.lora_enable:
    state_dict = gather_lora(model.named_parameters())
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(out_dir, state_dict=state_dict)
""",
        ),
        Example(
            title="already guarded by an `or` of rank tests",
            before="""\
local_rank = int(os.environ["LOCAL_RANK"])
trainer = Trainer(model=model, args=training_args)
if training_args.local_rank == 0 or training_args.local_rank == -1:
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
        by_block: dict[int, list[Save]] = {}
        outside: list[Save] = []
        callbacks = index.subclasses_of("TrainerCallback")  # LC006 guards those, in every script
        messages: dict[int, str] = {}  # id(save) -> its message
        per_test: dict = {}
        for save in ctx.saves:
            if not save.is_adapter_save or save.guarded:
                continue
            if save.at.scope.cls is not None and save.at.scope.cls.name.value in callbacks:
                continue
            # A pytest test runs in one process: only its own body's signals count there.
            signal = signal_for(index, save.at.scope, ctx.path, per_test)
            if signal is None:
                continue
            messages[id(save)] = f"every rank writes the adapter (distributed script: {signal})"
            trainer = save.trainer or next((t.name for t in ctx.facts.facts.trainers_at(save.at)), None)
            if trainer is None:
                continue  # no trainer to ask which process is the main one
            save.trainer = save.trainer or trainer
            if save.owner is not None:
                by_block.setdefault(id(save.owner), []).append(save)
            else:
                outside.append(save)
        for group in by_block.values():
            self._guard_block(ctx, group, messages[id(min(group, key=lambda s: s.at.order))])
        done: set[int] = set()
        for save in outside:
            message = messages[id(save)]
            statement = save.at.statement()
            if id(statement) in done:
                continue
            done.add(id(statement))
            why = unsafe(ctx, [statement], save.at.scope)
            if why:
                ctx.report(self.code, save.call, message, Status.REVIEW, why)
                continue
            ctx.plan.wrap_run([statement], f"{save.trainer}.is_world_process_zero()")
            ctx.report(self.code, statement, message, Status.FIXED)

    def _guard_block(self, ctx: RuleContext, group: list[Save], message: str) -> None:
        first = min(group, key=lambda s: s.at.order)
        block_if, branch, owner = first.block  # type: ignore[misc]
        scope = first.at.scope
        test = f"{first.trainer}.is_world_process_zero()"
        anchor: cst.CSTNode = block_if if branch is Branch.BODY else owner
        plain_if = branch is Branch.BODY and block_if.orelse is None and id(block_if) not in ctx.index.is_elif
        if plain_if and not unsafe(ctx, [block_if], scope):
            ctx.plan.wrap_if(block_if, test)
            ctx.report(self.code, anchor, message, Status.FIXED)
            return
        body = owner.body
        statements = list(body.body) if isinstance(body, cst.IndentedBlock) else []
        if not plain_if and statements and not unsafe(ctx, statements, scope):
            ctx.plan.wrap_block_body(owner, test)
            ctx.report(self.code, anchor, message, Status.FIXED)
            return
        # Each run of consecutive saving statements gets its own guard; the rest stays on every rank.
        runs = saving_runs(ctx, statements, scope)
        covered = {id(s) for run in runs for s in run}
        for run in runs:
            ctx.plan.wrap_run(run, test)
            ctx.report(self.code, run[0], message, Status.FIXED)
        for save in group:
            if not any(save.at.encloses(s) or save.at.node is s for s in statements if id(s) in covered):
                why = unsafe(ctx, [save.at.statement()], scope) or "it is not a statement of its own in the block"
                ctx.report(self.code, save.call, message, Status.REVIEW, why)


RULE = RankZeroGuard()
