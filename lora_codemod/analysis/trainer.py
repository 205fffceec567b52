"""Trainer constructions, the model names that reach them, and the "already fixed" forms."""

from __future__ import annotations

import re
from dataclasses import dataclass

import libcst as cst

from lora_codemod.analysis.index import Binding, Located, ModuleIndex, Scope, TrainerBuild
from lora_codemod.analysis.names import call_arg, callee_name, dotted_name, last_part

# `N = f(M, ...)` makes N a model derived from M.
DERIVING_CALLS = {"get_peft_model", "prepare_model_for_kbit_training"}
DEVICE_METHODS = {"to", "cuda", "float", "bfloat16", "half"}
# Names of these things are never models, even when passed where a model could be.
NOT_A_MODEL = re.compile(r"tokenizer|processor|feature_extractor|processing_class|config|collator", re.IGNORECASE)
# `model.config.save_pretrained(d)` saves a config, not weights.
NON_WEIGHT_PARTS = {"config", "generation_config", "tokenizer", "processor", "image_processor"}


def is_not_a_model(name: str) -> bool:
    return NOT_A_MODEL.search(last_part(name)) is not None


def derived_from(value: cst.BaseExpression | None, index: ModuleIndex) -> str | None:
    """M for `get_peft_model(M, cfg)`, `M.to(device)`, `setup_lora_config(M, args)`, ..."""
    if not isinstance(value, cst.Call):
        return None
    func = value.func
    if isinstance(func, cst.Attribute) and func.attr.value in DEVICE_METHODS:
        return dotted_name(func.value) or derived_from(func.value, index)
    callee = callee_name(value) or ""
    method = last_part(callee)
    if method in DERIVING_CALLS or method in index.peft_factories or re.search(r"PeftModel\w*\.from_pretrained$", callee):
        source = call_arg(value, 0, "model")
        if source is None:
            return None
        return dotted_name(source) or derived_from(source, index)
    return None


def _expression_names(expr: cst.BaseExpression | None, index: ModuleIndex) -> tuple[list[str], list[str]]:
    """(names that can be the value, names it was derived from inline)."""
    if expr is None:
        return [], []
    name = dotted_name(expr)
    if name is not None:
        return [name], []
    if isinstance(expr, cst.IfExp):  # `peft_model if args.use_lora else model`: not the test
        body, body_src = _expression_names(expr.body, index)
        orelse, orelse_src = _expression_names(expr.orelse, index)
        return body + orelse, body_src + orelse_src
    source = derived_from(expr, index)  # Trainer(model=get_peft_model(model, cfg))
    return [], [source] if source else []


@dataclass
class ModelNames:
    direct: set[str]  # names in the trainer model expression itself
    ancestors: set[str]  # names they were derived from earlier

    def leading(self, receiver: str) -> str | None:
        """The longest dotted prefix of `receiver` that is a model name."""
        parts = receiver.split(".")
        for end in range(len(parts), 0, -1):
            prefix = ".".join(parts[:end])
            if prefix in self.direct or prefix in self.ancestors:
                return prefix
        return None


def model_names(build: TrainerBuild, index: ModuleIndex) -> ModelNames:
    expr = call_arg(build.call, 0, "model")
    direct, inline_sources = _expression_names(expr, index)
    direct_set = {n for n in direct if not is_not_a_model(n)}
    ancestors: set[str] = set()
    work = list(direct_set) + [n for n in inline_sources if not is_not_a_model(n)]
    ancestors.update(work[len(direct_set):])
    seen = set(work)
    scope = build.at.scope
    while work:
        name = work.pop()
        for binding in scope.bindings_of(name):
            if binding.order >= build.at.order:
                continue
            source = derived_from(binding.value, index)
            if source and source not in seen and not is_not_a_model(source):
                seen.add(source)
                ancestors.add(source)
                work.append(source)
    return ModelNames(direct=direct_set, ancestors=ancestors - direct_set)


def _is_trainer_name(name: str, index: ModuleIndex) -> bool:
    return name in index.trainer_names or last_part(name).lower().endswith("trainer")


def trainer_model_owner(expr: cst.BaseExpression | None, index: ModuleIndex) -> str | None:
    """T when `expr` is the trainer's own model: `T.model`, `T.model_wrapped`, the unwrap
    `T.model.module if hasattr(T.model, "module") else T.model`, `getattr(T.model, ...)`.
    Returns "" for `accelerator.unwrap_model(...)` (fixed, but no trainer to name)."""
    if expr is None:
        return None
    name = dotted_name(expr)
    if name is not None:
        parts = name.split(".")
        for i in range(1, len(parts)):
            if parts[i] in ("model", "model_wrapped") and _is_trainer_name(".".join(parts[:i]), index):
                return ".".join(parts[:i])
        return None
    if isinstance(expr, cst.IfExp):
        body, orelse = trainer_model_owner(expr.body, index), trainer_model_owner(expr.orelse, index)
        return body if body is not None and body == orelse else None
    if isinstance(expr, cst.Call):
        callee = last_part(callee_name(expr) or "") if callee_name(expr) else (
            expr.func.attr.value if isinstance(expr.func, cst.Attribute) else "")
        if callee == "unwrap_model":
            inner = trainer_model_owner(call_arg(expr, 0, "model"), index)
            return inner if inner else ""
        if callee == "getattr" and expr.args:
            return trainer_model_owner(expr.args[0].value, index)
    return None


def latest_binding(scope: Scope, name: str, before: int, after: int = -1) -> Binding | None:
    found = None
    for binding in scope.bindings_of(name):
        if after < binding.order < before:
            found = binding
    return found


def trainers_before(item: Located, index: ModuleIndex) -> list[TrainerBuild]:
    return [b for b in index.trainer_builds if b.at.scope is item.scope and b.at.order < item.order]
