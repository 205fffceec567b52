"""The rewrite LC001 and LC004 share: save from `T.model` (unwrapped), keeping the chain.

```python
model_to_save = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
model_to_save.model.text_model.save_pretrained(d)
```

Inside a LoRA block the assignment is the block's first statement, once per block; outside one
it goes directly before the save statement. `hasattr`/`getattr`/`isinstance` tests in the block
that choose between the rewritten saves are pointed at the new name too.
"""

from __future__ import annotations

import libcst as cst

from lora_codemod.analysis.index import Scope
from lora_codemod.analysis.names import callee_name, dotted_prefix_nodes
from lora_codemod.analysis.saves import Kind, Save
from lora_codemod.findings import Status
from lora_codemod.rules.base import RuleContext

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


def unwrap_statement(name: str, trainer: str, quote: str) -> cst.BaseStatement:
    return cst.parse_statement(
        f"{name} = {trainer}.model.module if hasattr({trainer}.model, {quote}module{quote}) else {trainer}.model\n"
    )


def _reusable_name(ctx: RuleContext, save: Save, trainer: str) -> str | None:
    """A name already bound to `trainer`'s unwrapped model, in a block around the save."""
    scope, order = save.at.scope, save.at.order
    for name in list(scope.bindings):
        for binding in ctx.facts.facts.reaching(name, save.at):
            if binding.value is None or not save.at.encloses(binding.container) or binding.order >= order:
                continue
            values = ctx.facts.facts.binding_values(binding)
            if values and all(o.kind == "trainer" and o.key == trainer for o in values):
                return name
    return None


def retarget(ctx: RuleContext, save: Save, code: str, message: str, report: bool = True) -> bool:
    """Plan the rewrite of one save; report it under `code` (`report=False`: the caller adds
    edits of its own to the same finding, then reports it). False when it was reported for review."""
    trainer = save.trainer
    assert trainer is not None and save.leading_node is not None and save.leading is not None
    anchor: cst.CSTNode = save.owner if save.owner is not None else save.at.statement()
    known = ctx.fix_names.get(id(anchor))
    if known is not None and known[1] != trainer:
        ctx.report(code, save.call, f"`{save.shown}.save_pretrained` saves another trainer's model than the "
                   "block's first save", Status.REVIEW, f"both {known[1]} and {trainer} save in one LoRA block")
        return False
    if known is None:
        name = _reusable_name(ctx, save, trainer)
        if name is None:
            name = free_name(save.at.scope)
            statement = unwrap_statement(name, trainer, ctx.index.quote)
            if save.owner is not None:
                ctx.plan.insert_first(save.owner, statement)
            else:
                ctx.plan.insert_statement_before(anchor, statement)
        known = ctx.fix_names[id(anchor)] = (name, trainer)
    name = known[0]
    ctx.plan.rename(save.leading_node, name)
    if save.owner is not None:
        _retarget_tests(ctx, save, name)
        _retarget_dead_siblings(ctx, save, name)
    if report:
        ctx.report(code, save.call, message, Status.FIXED)
    return True


def _retarget_tests(ctx: RuleContext, save: Save, name: str) -> None:
    """Point `hasattr(model, ...)` in `if`/`elif` tests of the block that choose this save at `name`."""
    block = save.owner.body  # type: ignore[union-attr]
    for if_node, at in ctx.index.ifs.values():
        if not at.encloses(block) or not save.at.encloses(if_node):
            continue
        for call in _inspecting_calls(if_node.test):
            for prefix, node in dotted_prefix_nodes(call.args[0].value):
                if prefix == save.leading:
                    ctx.plan.rename(node, name)
                    break


def _retarget_dead_siblings(ctx: RuleContext, save: Save, name: str) -> None:
    """A save of the same name in the same block that cannot run (the `else:` of
    `hasattr(model, "model")` on a wrapper that always has it) gets no finding of its own, but
    saves through the same name as its siblings: the block does not end up mixing two receivers."""
    for other in ctx.saves:
        if (other.dead and other is not save and other.owner is save.owner and other.leading == save.leading
                and other.leading_node is not None and other.kind is Kind.TRAINED):
            ctx.plan.rename(other.leading_node, name)


def _inspecting_calls(test: cst.BaseExpression) -> list[cst.Call]:
    found: list[cst.Call] = []

    class Collect(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            if callee_name(node) in INSPECTING_CALLS and node.args:
                found.append(node)

    test.visit(Collect())
    return found
