"""The rewrite of LC001's plain-wrapper case: save from where the LoRA lives (contract v3).

One possible placement: the receiver gains its chain (`model_to_save.save_pretrained(d)` ->
`model_to_save.model.text_model.save_pretrained(d)`), a fix. Several: the save statement
becomes the setup's own `if`/`elif`/`else`, re-rooted on the receiver, each branch saving from
its placement: an *unsafe* fix (it repeats at save time tests the setup ran before
`get_peft_model` changed the object), applied only with `--unsafe-fixes`.
"""

from __future__ import annotations

import libcst as cst

from lora_codemod.analysis.saves import Kind, Save
from lora_codemod.analysis.values import source_of
from lora_codemod.findings import Status
from lora_codemod.rules.base import RuleContext
from lora_codemod.rules.retarget import retarget


def save_from_placement(ctx: RuleContext, save: Save, code: str) -> None:
    at = save.wrapper
    assert at is not None
    setup = at.setup
    receiver = source_of(save.receiver)
    shown = [f"`{receiver}{''.join('.' + p for p in c)}`" for c in _chains(at.possible)]
    message = (f"`{save.shown}` is a plain nn.Module wrapper (`{setup.wrapper.name}`, defined here) with no "
               f"save_pretrained: this raises AttributeError and writes no adapter; `{setup.where}` puts the "
               f"LoRA at {' or '.join(shown)}")
    chains = _chains(at.possible)
    statement = save.at.statement()
    if len(chains) > 1:
        if at.mirror is None:
            ctx.report(code, save.call, message, Status.REVIEW,
                       f"`{setup.where}` chooses between them with tests that cannot be repeated at this save: "
                       "save from the one this run uses")
            return
        if not _alone(statement, save.call):
            ctx.report(code, save.call, message, Status.REVIEW,
                       "the save is not a statement of its own, so it cannot become a choice between them")
            return
    # A trained name in a LoRA block is also saved through the trainer, as LC004 would do
    # (otherwise the next run would still have that to fix).
    if save.kind is Kind.TRAINED and save.block is not None and save.trainer is not None:
        if not retarget(ctx, save, code, message, report=False):
            return
    if len(chains) == 1:
        if chains[0]:
            ctx.plan.extend(save.receiver, chains[0])
        ctx.report(code, save.call, message, Status.FIXED)
        return
    assert at.mirror is not None
    ctx.plan.branch_save(statement, at.mirror.branches)  # type: ignore[arg-type]
    ctx.report(code, save.call, message, Status.FIXED,
               unsafe=(f"`{setup.where}` chooses between them with its own hasattr/isinstance tests; "
                       "--unsafe-fixes saves from there under the same tests, asked of the saved object"))


def _chains(placements) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for p in placements:
        if p.chain not in out:
            out.append(p.chain)
    return out


def _alone(statement: cst.CSTNode, call: cst.Call) -> bool:
    """`R.save_pretrained(...)` is the whole statement line (no `x = ...`, no `; other`)."""
    return (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
            and isinstance(statement.body[0], cst.Expr) and statement.body[0].value is call)
