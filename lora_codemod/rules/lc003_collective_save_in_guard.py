"""LC003: `trainer.save_model()` inside a rank-zero guard hangs under ZeRO-3/FSDP."""

from __future__ import annotations

import libcst as cst

from lora_codemod.analysis.guards import is_pure_guard
from lora_codemod.analysis.lora import Branch
from lora_codemod.findings import Status
from lora_codemod.rules.base import Example, Rule, RuleContext
from lora_codemod.rules.lc002_rank_zero_guard import collective_name


class CollectiveSaveInGuard(Rule):
    code = "LC003"
    name = "collective-save-in-rank-zero-guard"
    summary = "Call trainer.save_model() on every rank, not inside a rank-zero guard"
    doc = """\
## What it does
Reports `trainer.save_model(...)` inside a rank-zero guard (`if trainer.is_world_process_zero():`
and the other guard idioms). When the call is the first statement of the guard's body, stands
on its own line, and the guard tests the rank and nothing else, it moves the call out, just
before the guard.

## Why is this bad?
Under DeepSpeed ZeRO-3 and FSDP, `save_model` gathers the sharded weights from every rank. Called
on rank 0 alone it waits forever for the others. It needs no guard: `save_model` already writes
files from the main process only (`args.should_save`).

## Example
```python
if trainer.is_world_process_zero():
    trainer.save_model()
    logger.info("saved")
```

## Fix
```python
trainer.save_model()
if trainer.is_world_process_zero():
    logger.info("saved")
```

## When it does not apply
Reported for review without a fix: a `save_model` that is not the first statement of the guard
(statements before it may feed it), shares its line with other statements, sits deeper inside
the guard, is the guard's only statement, or is guarded by a test that also checks other
conditions (moving it out would run it when those are false).
"""
    examples = (
        Example(
            title="upstream DDP script",
            before="""\
trainer = Trainer(model=model, args=training_args)
# Save everything
if trainer.is_world_process_zero():
    trainer.save_model()
    logger.info("Model saved")
""",
            after="""\
trainer = Trainer(model=model, args=training_args)
# Save everything
trainer.save_model()
if trainer.is_world_process_zero():
    logger.info("Model saved")
""",
        ),
        Example(
            title="not first in the guard: reported only",
            before="""\
trainer = Trainer(model=model, args=training_args)
if trainer.is_world_process_zero():
    prepare_output_dir()
    trainer.save_model()
""",
        ),
    )

    def check(self, ctx: RuleContext) -> None:
        index = ctx.index
        for call in index.collective_calls:
            name = collective_name(call, index)
            if name is None or not name.endswith(".save_model"):
                continue
            guard = index.guard_of(call)
            if guard is None:
                continue
            message = f"`{name}()` inside a rank-zero guard hangs under DeepSpeed ZeRO-3/FSDP"
            reason = self._why_not_movable(call.node, guard, index)
            if reason:
                ctx.report(self.code, call.node, message, Status.REVIEW, reason)
                continue
            ctx.plan.move_first_statement_before(guard[0])
            ctx.report(self.code, call.node, message, Status.FIXED)

    @staticmethod
    def _why_not_movable(call: cst.CSTNode, guard, index) -> str:
        if_node, branch, _owner = guard
        if branch is not Branch.BODY or id(if_node) in index.is_elif:
            return "the guard is an `else`/`elif` branch"
        if not is_pure_guard(if_node.test):
            return "the guard also tests other conditions"
        body = if_node.body
        if not isinstance(body, cst.IndentedBlock):
            return "the guard is written on one line"
        first = body.body[0]
        is_first = (
            isinstance(first, cst.SimpleStatementLine)
            and len(first.body) == 1
            and isinstance(first.body[0], cst.Expr)
            and first.body[0].value is call
        )
        if not is_first:
            return "it is not the first statement of the guard, alone on its line"
        if len(body.body) == 1:
            return "it is the guard's only statement"
        return ""


RULE = CollectiveSaveInGuard()
