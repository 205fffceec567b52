"""LC003: a collective call inside a rank-zero guard hangs under ZeRO-3/FSDP."""

from __future__ import annotations

import libcst as cst

from lora_codemod.analysis.index import Located
from lora_codemod.analysis.ranks import is_guarded_path, is_pure_guard, path_value
from lora_codemod.findings import Status
from lora_codemod.rules.base import Example, Rule, RuleContext


class CollectiveInGuard(Rule):
    code = "LC003"
    name = "collective-call-in-rank-zero-guard"
    summary = "Make calls that every rank must make (save_model, ZeRO-3 gathers, barrier) outside rank-zero guards"
    doc = """\
## What it does
Reports every collective call inside a rank-zero guard: `trainer.save_model()`,
`trainer.push_to_hub()`, `dist.barrier()`, `accelerator.wait_for_everyone()`,
`trainer.model_wrapped._zero3_consolidated_16bit_state_dict()`, entering
`deepspeed.zero.GatheredParameters(...)`, and any same-file function that makes one. When the
call is `trainer.save_model(...)`, stands alone as the first statement of the guard's body,
and the guard tests the rank and nothing else, it moves the call out, just before the guard.

## Why is this bad?
Under DeepSpeed ZeRO-3 and FSDP these calls gather the sharded weights from every rank. Called
on rank 0 alone they wait forever for the others. `save_model` needs no guard: it already
writes files from the main process only (`args.should_save`).

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
The main-process-first idiom is not reported: a `barrier()` under a rank-zero guard in a scope
that also calls `barrier()` where the other ranks run (the transformers examples do this around
dataset preprocessing); likewise any collective that the same scope also makes on the other
ranks (`dist.broadcast(x, src=0)` on rank 0 and in the `else`). Reported without a fix: any collective other than `save_model`, and a
`save_model` that is not the first statement of the guard, shares its line, is the guard's only
statement, sits in an `else`/`elif`, under a second guard, or under a test that also checks
other conditions (moving it out would run it when those are false).
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
            reports="needs review",
        ),
        Example(
            title="main process first: barrier on both sides",
            before="""\
if training_args.local_rank > 0:
    torch.distributed.barrier()
dataset = dataset.map(tokenize)
if training_args.local_rank == 0:
    torch.distributed.barrier()
trainer = Trainer(model=model, args=training_args, train_dataset=dataset)
""",
        ),
    )

    def check(self, ctx: RuleContext) -> None:
        collectives = ctx.facts.collectives.calls
        for at, name in collectives:
            if not is_guarded_path(at.path()):
                continue
            if _other_ranks_meet_it(at, name, collectives):
                continue
            message = f"`{name}()` inside a rank-zero guard: every rank must make this call, rank 0 alone hangs under DeepSpeed ZeRO-3/FSDP"
            if not name.endswith(".save_model"):
                ctx.report(self.code, at.node, message, Status.REVIEW, "move it out of the guard by hand")
                continue
            guard, reason = _movable(ctx, at)
            if guard is None:
                ctx.report(self.code, at.node, message, Status.REVIEW, reason)
                continue
            ctx.plan.move_first_statement_before(guard)
            ctx.report(self.code, at.node, message, Status.FIXED)


def _other_ranks_meet_it(at: Located, name: str, collectives: list[tuple[Located, str]]) -> bool:
    """The main-process-first idiom, generalised: the same collective is made in a branch that
    runs on the other ranks (`if rank == 0: dist.broadcast(x) else: dist.broadcast(y)`), so
    every rank enters it and nothing waits forever."""
    method = name.rsplit(".", 1)[-1]
    for other, other_name in collectives:
        if other is at or other.scope is not at.scope or other_name.rsplit(".", 1)[-1] != method:
            continue
        path = other.path()
        if path_value(path, 1) is not False or path_value(path, 2) is not False:
            return True
    return False


def _movable(ctx: RuleContext, at: Located) -> tuple[cst.If | None, str]:
    """The guard whose first statement the call is, when moving it out is safe."""
    statement = at.statement()
    chain = at.ancestors
    inner: tuple[cst.If, bool] | None = None  # an `if` between the call and the guard
    for i in range(len(chain) - 1, 0, -1):
        node = chain[i]
        if not isinstance(node, cst.If):
            continue
        in_body = chain[i + 1] is node.body
        if not is_guarded_path([(node.test, in_body)]):  # not the guard itself: an `if` inside it
            inner = inner or (node, in_body)
            continue
        if inner is not None:
            test = " ".join(cst.Module(body=[]).code_for_node(inner[0].test).split())
            where = f"the body of `if {test}:`" if inner[1] else f"the `else` of `if {test}:`"
            return None, f"it sits in {where} inside the guard"
        if not in_body:
            return None, "the guard is an `else`/`elif` branch"
        if id(node) in ctx.index.is_elif:
            return None, "the guard is an `elif` branch"
        if not is_pure_guard(node.test):
            return None, "the guard also tests other conditions"
        body = node.body
        if not isinstance(body, cst.IndentedBlock):
            return None, "the guard is written on one line"
        first = body.body[0]
        if first is not statement or not (isinstance(first, cst.SimpleStatementLine) and len(first.body) == 1
                                           and isinstance(first.body[0], cst.Expr) and first.body[0].value is at.node):
            return None, "it is not the first statement of the guard, alone on its line"
        if len(body.body) == 1:
            return None, "it is the guard's only statement"
        guard_at = ctx.index.ifs[id(node)][1]
        if is_guarded_path(guard_at.path()):
            return None, "another rank-zero guard encloses this one"
        return node, ""
    return None, "the guard is not an `if`"


RULE = CollectiveInGuard()
