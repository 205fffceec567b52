"""LC001: save the LoRA adapter from the trainer's model, not from a stale name."""

from __future__ import annotations

import libcst as cst

from lora_codemod.analysis.index import ModuleIndex, Scope
from lora_codemod.analysis.names import callee_name, dotted_prefix_nodes
from lora_codemod.analysis.saves import SaveInBlock, Verdict
from lora_codemod.analysis.trainer import latest_binding, trainer_model_owner
from lora_codemod.findings import Status
from lora_codemod.rules.base import Example, Rule, RuleContext

NAME_CANDIDATES = ("model_to_save", "lora_model_to_save")
INSPECTING_CALLS = {"hasattr", "getattr", "isinstance"}


def free_name(scope: Scope) -> str:
    for name in NAME_CANDIDATES:
        if name not in scope.identifiers:
            return name
    n = 2
    while f"lora_model_to_save_{n}" in scope.identifiers:
        n += 1
    return f"lora_model_to_save_{n}"


def reusable_name(save: SaveInBlock, trainer: str, index: ModuleIndex) -> str | None:
    """A name already bound to the trainer's unwrapped model on every path to the save."""
    scope, order = save.at.scope, save.at.order
    for name, _bindings in scope.bindings.items():
        binding = latest_binding(scope, name, before=order)
        if binding is None or binding.value is None:
            continue
        if trainer_model_owner(binding.value, index) == trainer and save.at.encloses(binding.container):
            return name
    return None


def unwrap_statement(name: str, trainer: str, quote: str) -> cst.BaseStatement:
    return cst.parse_statement(
        f"{name} = {trainer}.model.module if hasattr({trainer}.model, {quote}module{quote}) else {trainer}.model\n"
    )


class SaveFromTrainerModel(Rule):
    code = "LC001"
    name = "save-from-trainer-model"
    summary = "Save the LoRA adapter from the trainer's model, not from a name the Trainer never saw"
    doc = """\
## What it does
Finds `R.save_pretrained(...)` inside an `if args.use_lora:` block, after `trainer = Trainer(...)`,
where `R` starts with a name of the model that reached the Trainer, and rewrites it to save from
`trainer.model` (unwrapped), keeping the rest of the attribute chain and every argument.

## Why is this bad?
`get_peft_model(model, cfg)` injects LoRA layers into `model` in place and returns a *new*
`PeftModel`. Saving the base `model` afterwards writes a full model (`config.json`,
`model.safetensors` with `base_layer` and `lora_A.default` keys) into `lora_adapters/` and no
`adapter_config.json`: neither `PeftModel.from_pretrained` nor a plain base-model load accepts
it. The same happens with `SFTTrainer(model=model, peft_config=cfg)`, which wraps the model itself.

The seed fix (`trainer.model.module if hasattr(...) else trainer.model`, then `.save_pretrained`)
is not enough on its own: when the Trainer trains a plain `nn.Module` wrapper whose inner model
carries the LoRA layers, `trainer.model.save_pretrained` raises `AttributeError`. LC001 therefore
keeps the chain: `model.model.text_model.save_pretrained(d)` becomes
`model_to_save.model.text_model.save_pretrained(d)`.

## Example
```python
peft_model = get_peft_model(model, lora_config)
trainer = Trainer(model=peft_model, args=training_args)
trainer.train()
if args.use_lora:
    model.save_pretrained(lora_dir)
```

## Fix
```python
if args.use_lora:
    model_to_save = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    model_to_save.save_pretrained(lora_dir)
```
With a stock Trainer `trainer.model` is the object passed in (only FSDP1 wraps it, hence the
`module` check). `hasattr`/`getattr`/`isinstance` tests that choose between the rewritten saves
are pointed at `model_to_save` too.

## When it does not apply
Left alone, with the reason printed: tokenizer, processor and config saves
(`model.config.save_pretrained`); saves before the trainer is built or in a file without a
Trainer; saves already made from `trainer.model`, `trainer.model_wrapped`, a name bound from
`trainer.model`, or `accelerator.unwrap_model(...)`. Reported for review instead of rewritten:
a model name rebound after the trainer is built (`model = model.merge_and_unload()`), two
trainers that could own the save, and a longer chain on a base model that only fed the
trainer's model, or that `SFTTrainer(peft_config=...)` wraps itself (the chain may not exist
on the PEFT model). So is the seed's own snippet when `trainer.model` is a plain `nn.Module`
wrapper defined in the file: `save_pretrained` does not exist there.
"""
    examples = (
        Example(
            title="base model saved under another name",
            before="""\
peft_model = get_peft_model(model, lora_config)
trainer = Trainer(model=peft_model, args=training_args)
if args.use_lora:
    model.save_pretrained(lora_dir)
""",
            after="""\
peft_model = get_peft_model(model, lora_config)
trainer = Trainer(model=peft_model, args=training_args)
if args.use_lora:
    model_to_save = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    model_to_save.save_pretrained(lora_dir)
""",
        ),
        Example(
            title="the chain through a wrapper is kept",
            before="""\
trainer = Trainer(model=model, args=training_args)
if args.use_lora:
    model.model.text_model.save_pretrained(lora_dir, safe_serialization=True)
""",
            after="""\
trainer = Trainer(model=model, args=training_args)
if args.use_lora:
    model_to_save = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    model_to_save.model.text_model.save_pretrained(lora_dir, safe_serialization=True)
""",
        ),
        Example(
            title="already saves from the trainer",
            before="""\
trainer = Trainer(model=model, args=training_args)
if args.use_lora:
    trainer.model.save_pretrained(lora_dir)
    tokenizer.save_pretrained(lora_dir)
""",
        ),
        Example(
            title="rebound after the trainer: needs review, not rewritten",
            before="""\
trainer = Trainer(model=model, args=training_args)
model = model.merge_and_unload()
if args.use_lora:
    model.save_pretrained(lora_dir)
""",
        ),
    )

    def check(self, ctx: RuleContext) -> None:
        groups: dict[int, list[SaveInBlock]] = {}
        for save in ctx.saves:
            receiver = save.call.func.value  # type: ignore[attr-defined]
            shown = _one_line(cst.Module(body=[]).code_for_node(receiver))
            if save.verdict is Verdict.FIXABLE:
                groups.setdefault(id(save.owner), []).append(save)
            elif save.verdict is Verdict.REVIEW:
                ctx.report(self.code, save.call, f"`{shown}.save_pretrained` may not save the trained adapter", Status.REVIEW, save.reason)
            else:
                ctx.report(self.code, save.call, f"`{shown}.save_pretrained` in a LoRA block", Status.SKIPPED, save.reason)
        for group in groups.values():
            self._fix_block(ctx, group)

    def _fix_block(self, ctx: RuleContext, group: list[SaveInBlock]) -> None:
        first = min(group, key=lambda s: s.at.order)
        trainer = first.trainer
        assert trainer is not None
        name = reusable_name(first, trainer, ctx.index)
        if name is None:
            name = free_name(first.at.scope)
            ctx.plan.insert_first(first.owner, unwrap_statement(name, trainer, ctx.index.quote))
        renamed: set[str] = set()
        for save in group:
            if save.trainer != trainer:
                ctx.report(self.code, save.call, "saves from another trainer's model than the block's first save",
                           Status.REVIEW, f"both {trainer} and {save.trainer} save in one LoRA block")
                continue
            assert save.leading_node is not None and save.leading is not None
            ctx.plan.rename(save.leading_node, name)
            renamed.add(save.leading)
            ctx.report(self.code, save.call, _fixed_message(save, trainer), Status.FIXED)
        self._retarget_tests(ctx, group, renamed, name)

    def _retarget_tests(self, ctx: RuleContext, group: list[SaveInBlock], renamed: set[str], name: str) -> None:
        """Point `hasattr(model, ...)` in `if`/`elif` tests that choose between the saves at `name`."""
        block = group[0].block
        for if_node, at in ctx.index.ifs.values():
            if not at.encloses(block) or not any(s.at.encloses(if_node) for s in group):
                continue
            for call in _inspecting_calls(if_node.test):
                target = call.args[0].value
                for prefix, node in dotted_prefix_nodes(target):
                    if prefix in renamed:
                        ctx.plan.rename(node, name)
                        break


def _one_line(code: str, limit: int = 60) -> str:
    """A finding is one line: fold a multi-line receiver and cut a long one."""
    text = " ".join(code.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fixed_message(save: SaveInBlock, trainer: str) -> str:
    if save.stale == "peft_config":
        return f"`{save.leading}` is the base model: {trainer} wraps it in a PeftModel itself (peft_config=)"
    if save.stale == "ancestor":
        return f"`{save.leading}` is the base model that get_peft_model wrapped: it saves a full model, not the adapter"
    return f"save the adapter from {trainer}.model (unwrapped), the object the Trainer trained, not `{save.leading}`"


def _inspecting_calls(test: cst.BaseExpression) -> list[cst.Call]:
    found: list[cst.Call] = []

    class Collect(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            if callee_name(node) in INSPECTING_CALLS and node.args:
                found.append(node)

    test.visit(Collect())
    return found


RULE = SaveFromTrainerModel()
