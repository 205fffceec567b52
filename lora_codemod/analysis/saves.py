"""Classify every `R.save_pretrained(...)` inside a LoRA block (shared by LC001 and LC002)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import libcst as cst

from lora_codemod.analysis.index import BlockOwner, Located, ModuleIndex
from lora_codemod.analysis.lora import Branch
from lora_codemod.analysis.names import callee_name, dotted_name, dotted_prefix_nodes, has_keyword, last_part
from lora_codemod.analysis.trainer import (
    NON_WEIGHT_PARTS,
    is_not_a_model,
    latest_binding,
    model_names,
    trainer_model_owner,
    trainers_before,
)


class Verdict(enum.Enum):
    FIXABLE = "fixable"
    ALREADY_FIXED = "already fixed"
    REVIEW = "needs review"
    SKIPPED = "left alone"


@dataclass
class SaveInBlock:
    at: Located
    call: cst.Call
    block_if: cst.If
    branch: Branch
    owner: BlockOwner  # the If (body) or Else whose body is the LoRA block
    verdict: Verdict
    reason: str = ""
    trainer: str | None = None  # T, when known
    leading: str | None = None  # the model name replaced by the rewrite
    leading_node: cst.BaseExpression | None = None
    # Why the leading name is not the trained object: "ancestor" (the base that get_peft_model
    # wrapped), "peft_config" (the trainer wraps it itself), "" (same object; the fix is defensive).
    stale: str = ""

    @property
    def block(self) -> cst.BaseSuite:
        """The LoRA block itself (not the `if` around it, whose other branches are not LoRA)."""
        return self.owner.body

    @property
    def main_process_only(self) -> bool:
        return has_keyword(self.call, "is_main_process")


def classify_saves(index: ModuleIndex) -> list[SaveInBlock]:
    out = []
    for at in index.save_calls:
        block = index.lora_block_of(at)
        if block is None:
            continue
        block_if, branch, owner = block
        assert isinstance(at.node, cst.Call) and isinstance(at.node.func, cst.Attribute)
        item = SaveInBlock(at=at, call=at.node, block_if=block_if, branch=branch, owner=owner, verdict=Verdict.SKIPPED)
        _classify(item, at.node.func.value, index)
        out.append(item)
    return out


def _classify(item: SaveInBlock, receiver: cst.BaseExpression, index: ModuleIndex) -> None:
    def verdict(kind: Verdict, reason: str = "", trainer: str | None = None) -> None:
        item.verdict, item.reason, item.trainer = kind, reason, trainer

    name = dotted_name(receiver)
    if name is None:
        owner = trainer_model_owner(receiver, index)
        if owner is not None:
            verdict(Verdict.ALREADY_FIXED, "already saves the trainer's unwrapped model", owner or None)
        else:
            verdict(Verdict.SKIPPED, "the receiver is an expression, not a model name")
        return
    owner = trainer_model_owner(receiver, index)
    if owner:
        verdict(Verdict.ALREADY_FIXED, f"already saves from {owner}.model", owner)
        _check_plain_wrapper(item, index, owner, shown=name)
        return
    parts = name.split(".")
    if len(parts) > 1 and parts[-1] in NON_WEIGHT_PARTS:
        verdict(Verdict.SKIPPED, f"saves the {parts[-1]}, not the adapter weights")
        return
    if is_not_a_model(parts[0]) or is_not_a_model(name):
        verdict(Verdict.SKIPPED, f"`{name}` is a tokenizer, processor or config, not a model")
        return

    # A name bound from the trainer's model (`model_to_save = trainer.model...`) is fixed already.
    for prefix, _node in reversed(dotted_prefix_nodes(receiver)):
        binding = latest_binding(item.at.scope, prefix, before=item.at.order)
        if binding is None:
            continue
        owner = trainer_model_owner(binding.value, index)
        if owner is not None:
            verdict(Verdict.ALREADY_FIXED, f"`{prefix}` is bound from the trainer's model", owner or None)
            if owner and prefix == name:
                _check_plain_wrapper(item, index, owner, shown=name)
            return
        break

    builds = trainers_before(item.at, index)
    if not builds:
        if not index.trainer_builds:
            verdict(Verdict.SKIPPED, "no Trainer is built in this file")
        elif any(b.at.scope is item.at.scope for b in index.trainer_builds):
            verdict(Verdict.SKIPPED, "the save comes before the trainer is built")
        else:
            verdict(Verdict.SKIPPED, "no Trainer is built in this function")
        return

    owners: dict[str, tuple[str, bool]] = {}  # trainer -> (leading model name, is it direct)
    for build in builds:
        names = model_names(build, index)
        leading = names.leading(name)
        if leading is None:
            continue
        direct = leading in names.direct
        previous = owners.get(build.name)
        owners[build.name] = (leading, direct or (previous is not None and previous[1]))
    if not owners:
        trainers = ", ".join(sorted({b.name for b in builds}))
        verdict(Verdict.SKIPPED, f"`{parts[0]}` is not the model given to {trainers}")
        return
    if len(owners) > 1:
        verdict(Verdict.REVIEW, "two trainers could own this save: " + ", ".join(sorted(owners)))
        return
    (trainer, (leading, direct)), = owners.items()
    item.trainer, item.leading = trainer, leading
    item.leading_node = dict(dotted_prefix_nodes(receiver))[leading]

    last_build = max((b for b in builds if b.name == trainer), key=lambda b: b.at.order)
    rebound = latest_binding(item.at.scope, leading, before=item.at.order, after=last_build.at.order)
    if rebound is not None:
        verdict(Verdict.REVIEW, f"`{leading}` is rebound after {trainer} is built", trainer)
        return
    if leading != name and not direct:
        verdict(
            Verdict.REVIEW,
            f"`{leading}` only feeds the trainer's model; the chain `{name}` may not exist on {trainer}.model",
            trainer,
        )
        return
    if any(b.name == trainer and has_keyword(b.call, "peft_config") for b in builds):
        item.stale = "peft_config"
        if leading != name:  # the trainer wraps `leading`: its chain is not where it was
            verdict(Verdict.REVIEW, f"{trainer} wraps `{leading}` in a PeftModel (peft_config=); "
                    f"the chain `{name}` may not exist on {trainer}.model", trainer)
            return
    elif not direct:
        item.stale = "ancestor"
    verdict(Verdict.FIXABLE, "", trainer)


def _check_plain_wrapper(item: SaveInBlock, index: ModuleIndex, trainer: str, shown: str) -> None:
    """The seed's snippet saves `trainer.model` itself. When that is a plain `nn.Module` wrapper
    of this file (LoRA on a model inside it), `save_pretrained` does not exist on it."""
    if shown not in (f"{trainer}.model", f"{trainer}.model_wrapped") and "." in shown:
        return  # a chain into the wrapper (`model_to_save.model.save_pretrained`) is fine
    for build in index.trainer_builds:
        if build.name != trainer or build.at.scope is not item.at.scope or build.at.order > item.at.order:
            continue
        for name in model_names(build, index).direct:
            for binding in build.at.scope.bindings_of(name):
                value = binding.value
                if binding.order < build.at.order and isinstance(value, cst.Call):
                    cls = last_part(callee_name(value) or "")
                    if cls in index.plain_module_classes:
                        item.verdict = Verdict.REVIEW
                        item.reason = (
                            f"{trainer}.model may be a plain nn.Module wrapper (`{cls}`, defined here) with no "
                            "save_pretrained: this raises AttributeError; save the PEFT model inside it"
                        )
                        return
