"""What every `R.save_pretrained(...)` saves, seen from the trainers that reach it.

The receiver's kind (contract v2): *trained* (the object the trainer holds, through identity
steps), *stale* (an object the trainer's model was wrapped from, or a model that a
`peft_config=` trainer wraps itself), *rebound* (reassigned after the trainer by something other
than an identity step), *not a model*, *another model*, *unknown*, or *through the trainer*
(`trainer.model`, `model_to_save` bound from it, `accelerator.unwrap_model(...)`). The rules
only read these facts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property

import libcst as cst

from lora_codemod.analysis.collectives import Collectives
from lora_codemod.analysis.index import BlockOwner, Located, ModuleIndex
from lora_codemod.analysis.lora import Branch
from lora_codemod.analysis.names import callee_name, dotted_name, dotted_prefix_nodes, has_keyword, last_part
from lora_codemod.analysis.ranks import is_guarded_path
from lora_codemod.analysis.vocabulary import NOT_A_MODEL_PART, NOT_A_MODEL_WORD
from lora_codemod.analysis.wrappers import AtSave, WrapperFacts
from lora_codemod.analysis.values import (
    Facts,
    Obj,
    Trainer,
    source_of,
    is_identity_step,
    trainer_model_owner,
)


class Kind(enum.Enum):
    TRAINED = "trained"
    STALE = "stale"
    REBOUND = "rebound"
    NOT_A_MODEL = "not a model"
    OTHER = "another model"
    UNKNOWN = "unknown"
    THROUGH_TRAINER = "through the trainer"
    NO_TRAINER = "no trainer"


@dataclass
class Save:
    at: Located
    call: cst.Call
    kind: Kind
    reason: str = ""  # why, in words (for left-alone and review messages)
    trainer: str | None = None  # T, when one trainer owns the save
    leading: str | None = None  # the model name the rewrite replaces
    leading_node: cst.BaseExpression | None = None
    stale: str = ""  # "ancestor" | "peft_config" for STALE
    review: str = ""  # set when the save must not be rewritten: why
    block: tuple[cst.If, Branch, BlockOwner] | None = None  # the innermost LoRA block around it
    guarded: bool = False  # under a rank-zero guard, or passes is_main_process=
    ambiguous_owner: bool = False  # two trainers hold the receiver's object
    # The receiver is a plain nn.Module wrapper as a whole, and its LoRA setup is known: where
    # the LoRA can be when this save runs (contract v3, "Plain wrappers").
    wrapper: AtSave | None = None
    dead: bool = False  # the save's own tests cannot hold (decided by the wrapper's class): it never runs

    @property
    def receiver(self) -> cst.BaseExpression:
        return self.call.func.value  # type: ignore[attr-defined]

    @property
    def shown(self) -> str:
        text = source_of(self.receiver)
        return text if len(text) <= 60 else text[:57] + "..."

    @property
    def is_adapter_save(self) -> bool:
        return self.kind in (Kind.TRAINED, Kind.STALE, Kind.THROUGH_TRAINER) and not self.dead

    @property
    def owner(self) -> BlockOwner | None:
        return self.block[2] if self.block else None


class SaveFacts:
    """Every save of a module, classified once; shared by the rules through RuleContext."""

    def __init__(self, index: ModuleIndex) -> None:
        self.index = index
        self.facts = Facts(index)
        self.collectives = Collectives(index)
        self.wrappers = WrapperFacts(index, self.facts)

    @cached_property
    def saves(self) -> list[Save]:
        return [self._classify(at) for at in self.index.save_calls]

    def _classify(self, at: Located) -> Save:
        call = at.node
        assert isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute)
        save = Save(at=at, call=call, kind=Kind.UNKNOWN, block=self.index.lora_block_of(at))
        save.guarded = has_keyword(call, "is_main_process") or is_guarded_path(at.path())
        receiver = call.func.value
        if _names_a_non_model(receiver):
            save.kind, save.reason = Kind.NOT_A_MODEL, f"`{save.shown}` is a tokenizer, processor or config, not a model"
            return save
        trainers = self.facts.trainers_at(at)
        values = self.facts.values(receiver, at)
        if _through_trainer(save, values, "already saves the trainer's model"):
            self._check_plain_wrapper(save, trainers)
            return save
        if values and all(o.kind == "nonmodel" for o in values):
            save.kind, save.reason = Kind.NOT_A_MODEL, f"`{save.shown}` holds a tokenizer, processor or config"
            return save
        if not trainers:
            save.kind = Kind.NO_TRAINER
            cls = at.scope.cls
            if cls is not None and cls.name.value in self.index.subclasses_of("TrainerCallback"):
                save.reason = (f"a save in the callback `{cls.name.value}.{at.scope.name}`: the Trainer hands it "
                               "its model at run time (LC006 checks which ranks run it)")
            elif not self.facts.trainer_names():
                save.reason = "no Trainer is built in this file"
            else:
                save.reason = f"no Trainer built in this file reaches this save in `{at.scope.name}`"
            return save
        self._against_trainers(save, receiver, trainers)
        return save

    def _against_trainers(self, save: Save, receiver: cst.BaseExpression, trainers: list[Trainer]) -> None:
        at = save.at
        # LMFlow: `Trainer(model=model.get_backend_model())`, saved from the same expression.
        for trainer in trainers:
            text = trainer.textual_model()
            if text is not None and source_of(receiver) == text:
                save.kind, save.trainer, save.leading_node = Kind.TRAINED, trainer.name, receiver
                save.leading = text
                return
        chain = dotted_prefix_nodes(receiver)
        if not chain:
            root = _root(receiver)
            values = self.facts.values(root, at) if root is not None else frozenset()
            if _through_trainer(save, values, "already saves a part of the trainer's model"):
                return  # trainer.model.get_vision_tower().x
            save.kind, save.reason = Kind.UNKNOWN, f"cannot tell which object `{save.shown}` holds"
            return
        for prefix, node in chain:
            values = self.facts.name_values(prefix, at)
            if _through_trainer(save, values, f"`{prefix}` already holds the trainer's model"):
                self._check_plain_wrapper(save, trainers, prefix == dotted_name(receiver))
                return
            rebound = [t for t in trainers if self._rebound(prefix, t, at)]
            if rebound:
                save.kind, save.leading, save.leading_node = Kind.REBOUND, prefix, node
                save.reason = f"`{prefix}` is assigned after {rebound[0].name} is built, to a new object (not the trained model)"
                return
            verdicts = {t.name: _verdict(values, t) for t in trainers}
            owning = {n: v for n, v in verdicts.items() if v[0] in (Kind.TRAINED, Kind.STALE)}
            if not owning:
                continue
            save.leading, save.leading_node = prefix, node
            if len(owning) > 1:
                stale = any(v[0] is Kind.STALE for v in owning.values())
                names = ", ".join(sorted(owning))
                save.kind = Kind.STALE if stale else Kind.TRAINED
                save.review = f"two trainers could own this save: {names}"
                save.reason = save.review
                save.ambiguous_owner = True
                return
            (name, (kind, why)), = owning.items()
            save.kind, save.trainer, save.stale = kind, name, why
            full = dotted_name(receiver)
            if kind is Kind.STALE and full != prefix:
                save.review = (f"`{prefix}` is not the trained object ({_stale_words(why, name)}); "
                               f"the chain `{full}` may not exist on {name}.model")
            elif kind is Kind.STALE and self._state_dict_from(save, prefix):
                save.review = (f"the state_dict= passed here is computed from `{prefix}` too: re-rooting the save "
                               "would still write keys without the PEFT prefix")
            elif kind is Kind.TRAINED and full == prefix:  # the very object the trainer holds
                self._wrapper_save(save, values, f"`{prefix}`")
            return
        # No prefix reaches a trainer: the longest bound prefix says what the receiver is.
        kinds = []
        for prefix, _node in reversed(chain):
            values = self.facts.name_values(prefix, at)
            if any(o.kind != "opaque" or o.label != prefix for o in values):
                kinds = [_verdict(values, t)[0] for t in trainers]
                break
        if kinds and all(k is Kind.OTHER for k in kinds):
            save.kind, save.reason = Kind.OTHER, f"`{save.shown}` is another model than the one {trainers[0].name} trains"
        elif kinds and all(k is Kind.NOT_A_MODEL for k in kinds):
            save.kind, save.reason = Kind.NOT_A_MODEL, f"`{save.shown}` holds a tokenizer, processor or config"
        else:
            save.kind, save.reason = Kind.UNKNOWN, f"cannot tell which object `{save.shown}` holds"

    def _rebound(self, name: str, trainer: Trainer, at: Located) -> bool:
        built = trainer.last_order(at.scope)
        if built is None:
            return False
        late = [b for b in self.facts.reaching(name, at) if b.order > built and not is_identity_step(b.value)]
        # A fresh load after the trainer (`ref_model = AutoModel.from_pretrained(...)`) is another
        # model; anything else assigned there (`merged = model.merge_and_unload()`) is rebound.
        return any(any(o.kind not in ("load", "nonmodel") for o in self.facts.binding_values(b)) for b in late)

    def _state_dict_from(self, save: Save, name: str) -> bool:
        """Does the `state_dict=` argument derive from `name` (directly or through an assignment)?"""
        for arg in save.call.args:
            if arg.keyword is not None and arg.keyword.value == "state_dict":
                return _mentions(arg.value, name, self.facts, save.at, depth=2)
        return False

    def _check_plain_wrapper(self, save: Save, trainers: list[Trainer], whole: bool = True) -> None:
        """The usual snippet saves `trainer.model` itself: is that a plain `nn.Module` wrapper?"""
        if not whole:
            return
        receiver = dotted_name(save.receiver) or ""
        owner = trainer_model_owner(receiver, self.index)
        if "." in receiver and receiver not in (f"{owner}.model", f"{owner}.model_wrapped"):
            return  # a chain into the wrapper (`model_to_save.model.save_pretrained`) is fine
        for trainer in trainers:
            if save.trainer and trainer.name != save.trainer:
                continue
            self._wrapper_save(save, trainer.model, f"{trainer.name}.model")
            if save.review or save.wrapper is not None or save.dead:
                return

    def _wrapper_save(self, save: Save, objects: frozenset, what: str) -> None:
        """A save of `objects` as a whole: when they are a plain wrapper of this file, where its
        LoRA is (save.wrapper), or that the save never runs (save.dead), or why neither is known."""
        wrappers = self.wrappers.wrapper_objects(objects)
        if not wrappers:
            return
        cls = self.wrappers.classes[wrappers[0].label]
        plain = (f"{what} is a plain nn.Module wrapper (`{cls.name}`, defined here) with no save_pretrained: "
                 "where this runs it raises AttributeError")
        if cls.getattr_hook:
            save.review = (f"{what} is a wrapper (`{cls.name}`, defined here) with no save_pretrained whose "
                           "__getattr__ may or may not forward it: cannot tell what this saves")
            return
        roots = self.wrappers.roots_at(save.at, cls)
        if self.wrappers.decide(save.at.path(), roots, cls) is False:
            save.dead = True  # `else:` of `hasattr(model, "model")` when __init__ always sets self.model
            return
        setup = self.wrappers.setup_of(objects)
        if setup is None or not setup.complete:
            save.review = f"{plain}; no LoRA setup of it was found to save from: save the PEFT model inside it"
            return
        at = self.wrappers.at_save(setup, save.at, roots)
        if at.dead:
            save.dead = True
            return
        if not at.possible:
            save.review = f"{plain}; no LoRA placement of {setup.where} reaches this save"
            return
        if all(not p.chain for p in at.possible):
            return  # the setup wrapped the wrapper itself: the trainer's model is a PeftModel here
        save.wrapper = at

def _through_trainer(save: Save, values: frozenset, reason: str) -> bool:
    """Mark the save as made through the trainer when every object it may hold is `T.model`."""
    if not values or any(o.kind != "trainer" for o in values):
        return False
    save.kind, save.trainer, save.reason = Kind.THROUGH_TRAINER, next(iter({o.key for o in values})) or None, reason
    return True


def _verdict(values: frozenset, trainer: Trainer) -> tuple[Kind, str]:
    model = trainer.model
    wrapped_here = trainer.wrapped_by_trainer
    ancestors: set[Obj] = set()
    for obj in model:
        ancestors |= obj.ancestors()
    kinds: list[tuple[Kind, str]] = []
    for obj in values:
        if obj in wrapped_here:
            kinds.append((Kind.STALE, "peft_config"))
        elif obj in model:
            kinds.append((Kind.TRAINED, ""))
        elif obj in ancestors:
            kinds.append((Kind.STALE, "ancestor"))
        elif obj.kind == "nonmodel":
            kinds.append((Kind.NOT_A_MODEL, ""))
        elif obj.kind in ("load", "wrap"):
            kinds.append((Kind.OTHER, ""))
        else:
            kinds.append((Kind.UNKNOWN, ""))
    if not kinds:
        return Kind.UNKNOWN, ""
    found = {k for k, _ in kinds}
    if found == {Kind.TRAINED}:
        return Kind.TRAINED, ""
    if found <= {Kind.TRAINED, Kind.STALE}:
        why = "peft_config" if ("peft_config" in {w for _, w in kinds}) else "ancestor"
        return Kind.STALE, why
    if len(found) == 1:
        return found.pop(), ""
    return Kind.UNKNOWN, ""


def _stale_words(why: str, trainer: str) -> str:
    if why == "peft_config":
        return f"{trainer} wraps it in a PeftModel itself (peft_config=)"
    return "get_peft_model wrapped it"


def _root(expr: cst.BaseExpression) -> cst.BaseExpression | None:
    """The dotted name a chain of attributes, calls and subscripts starts from."""
    while dotted_name(expr) is None:
        if isinstance(expr, (cst.Attribute, cst.Subscript)):
            expr = expr.value
        elif isinstance(expr, cst.Call):
            expr = expr.func
        else:
            return None
    return expr


def _names_a_non_model(receiver: cst.BaseExpression) -> bool:
    """Decided first: `model.config`, `self.image_processor`, `tokenizer`, `model.get_tokenizer()`."""
    if isinstance(receiver, cst.Attribute):  # also `trainer.model.get_vision_tower().image_processor`
        return NOT_A_MODEL_PART.search(receiver.attr.value) is not None
    if isinstance(receiver, cst.Name):
        return NOT_A_MODEL_PART.search(receiver.value) is not None
    if isinstance(receiver, cst.Call):
        callee = callee_name(receiver)
        method = last_part(callee) if callee else (
            receiver.func.attr.value if isinstance(receiver.func, cst.Attribute) else "")
        return NOT_A_MODEL_WORD.search(method) is not None
    return False


def _mentions(expr: cst.BaseExpression, name: str, facts: Facts, at: Located, depth: int) -> bool:
    found = False

    class Walk(cst.CSTVisitor):
        def visit_Name(self, node: cst.Name) -> None:
            nonlocal found
            if node.value == name.split(".")[0]:
                found = True
            elif depth > 0:
                for binding in facts.reaching(node.value, at):
                    if binding.value is not None and _mentions(binding.value, name, facts, binding.at, depth - 1):
                        found = True

    expr.visit(Walk())
    return found
