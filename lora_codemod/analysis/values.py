"""What a name holds (contract v2, "What a name holds").

Values are sets of abstract objects, each created at one place: a load or constructor
(`from_pretrained`, `Model(...)`), a wrapping step (`get_peft_model(M)`,
`prepare_model_for_kbit_training(M)`, `PeftModel.from_pretrained(M)`, a same-file function that
calls `get_peft_model`: a new object whose `inner` is what M held), a tokenizer/processor/config
load, a parameter or any other expression (opaque), or the trainer's own model (`T.model`).
Identity steps (`N = M`, `.to()`, `.cuda()`, `torch.compile(M)`, `accelerator.prepare(M)`,
`accelerator.unwrap_model(M)`, an `a if c else b` of those) pass objects through unchanged.

A name's value at a point is the union over the assignments that can reach it: every branch
counts, a later assignment in straight-line code replaces an earlier one, and a test decided by
a LoRA atom takes its LoRA-on side (`if args.use_lora: train_model = peft_model` replaces an
earlier `train_model = model`). `self.X` is followed across the methods of its class, a name
not bound in a function is looked up in the enclosing scope, and a same-file function that
returns a trainer construction (a factory) maps its parameters to the caller's arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

import libcst as cst

from lora_codemod.analysis.index import Binding, Located, ModuleIndex, Scope, is_trainer_call
from lora_codemod.analysis.lora import lora_value
from lora_codemod.analysis.names import call_arg, callee_name, dotted_name, last_part
from lora_codemod.analysis.vocabulary import NOT_A_MODEL_WORD

DEVICE_METHODS = frozenset({"to", "cuda", "cpu", "float", "half", "bfloat16", "double", "train", "eval",
                            "requires_grad_"})
WRAPPING_CALLS = frozenset({"get_peft_model", "prepare_model_for_kbit_training", "prepare_model_for_int8_training"})
PEFT_LOAD = re.compile(r"(^|\.)PeftModel\w*\.from_pretrained$")
LOADS = frozenset({"from_pretrained", "from_config", "from_single_file", "from_dict"})
NOT_A_MODEL_CLASS = re.compile(r"Tokenizer|Processor|FeatureExtractor|Config\b|Config$|ProcessingClass")


@dataclass(frozen=True)
class Obj:
    """An object a name can hold. `kind`: "wrap", "load", "nonmodel", "opaque", "trainer"."""

    kind: str
    key: object
    inner: frozenset = frozenset()
    label: str = ""

    def ancestors(self) -> set[Obj]:
        """Every object this one was built from through wrapping steps (transitively)."""
        out: set[Obj] = set()
        work = list(self.inner)
        while work:
            obj = work.pop()
            if obj not in out:
                out.add(obj)
                work.extend(obj.inner)
        return out


Values = frozenset


@dataclass
class Construction:
    """One way a trainer name gets its trainer: `C(model=M, ...)`, directly or in a factory."""

    call: cst.Call
    at: Located  # where the trainer name is bound (the caller's assignment for a factory)
    model: frozenset  # the objects the trainer's model expression holds
    model_expr: cst.BaseExpression | None  # None for a factory (the caller never wrote it)
    peft_config: bool  # the trainer wraps its model itself


@dataclass
class Trainer:
    name: str
    constructions: list[Construction]

    @property
    def model(self) -> frozenset:
        return frozenset().union(*(c.model for c in self.constructions))

    @property
    def wrapped_by_trainer(self) -> frozenset:
        return frozenset().union(*(c.model for c in self.constructions if c.peft_config))

    def last_order(self, scope: Scope) -> int | None:
        orders = [c.at.order for c in self.constructions if c.at.scope is scope]
        return max(orders) if orders else None

    def textual_model(self) -> str | None:
        """LMFlow's `model=model.get_backend_model()`: an expression no step explains."""
        for c in self.constructions:
            expr = c.model_expr
            if expr is not None and not _is_explained(expr):
                return source_of(expr)
        return None


def source_of(node: cst.CSTNode) -> str:
    return " ".join(cst.Module(body=[]).code_for_node(node).split())


def _is_explained(expr: cst.BaseExpression) -> bool:
    """A dotted name, a conditional of explained expressions, an identity or wrapping call."""
    if dotted_name(expr) is not None:
        return True
    if isinstance(expr, cst.IfExp):
        return _is_explained(expr.body) and _is_explained(expr.orelse)
    if isinstance(expr, cst.Call):
        return _identity_source(expr) is not None or _wrapping_source(expr, None) is not None
    return False


def _identity_source(call: cst.Call) -> cst.BaseExpression | None:
    """M for `M.to(...)`, `torch.compile(M)`, `accelerator.prepare(M)`."""
    func = call.func
    if isinstance(func, cst.Attribute) and func.attr.value in DEVICE_METHODS:
        return func.value
    callee = callee_name(call) or ""
    method = last_part(callee)
    positional = [a for a in call.args if a.keyword is None and not a.star]
    if method == "compile" and callee.startswith("torch") and positional:
        return positional[0].value
    if method == "prepare" and len(positional) == 1:
        return positional[0].value
    return None


def _wrapping_source(call: cst.Call, index: ModuleIndex | None) -> cst.BaseExpression | bool | None:
    """M for `get_peft_model(M, cfg)` and the other wrapping steps; True when the wrapped model
    is not named; None when the call is not a wrapping step."""
    callee = callee_name(call) or ""
    method = last_part(callee)
    factories = index.peft_factories if index is not None else set()
    if method in WRAPPING_CALLS or method in factories or PEFT_LOAD.search(callee):
        return call_arg(call, 0, "model") or True
    return None


def is_identity_step(expr: cst.BaseExpression | None) -> bool:
    if expr is None:
        return False
    if dotted_name(expr) is not None:
        return True
    if isinstance(expr, cst.IfExp):
        return is_identity_step(expr.body) and is_identity_step(expr.orelse)
    if isinstance(expr, cst.Call):
        source = _identity_source(expr)
        if source is not None:
            return is_identity_step(source) or isinstance(source, cst.Call)
        return last_part(callee_name(expr) or "") == "unwrap_model"
    return False


def trainer_model_owner(name: str, index: ModuleIndex) -> str | None:
    """T when the dotted name is `T.model`, `T.model_wrapped` (or a chain below them)."""
    parts = name.split(".")
    for i in range(1, len(parts)):
        if parts[i] in ("model", "model_wrapped"):
            owner = ".".join(parts[:i])
            if owner in index.trainer_names or last_part(owner).lower().endswith("trainer"):
                return owner
    return None


@dataclass
class Facts:
    """The value analysis of one module, computed on demand and cached."""

    index: ModuleIndex
    _binding_values: dict[int, frozenset] = field(default_factory=dict)
    _trainer_names: list[str] | None = None
    _in_progress: set[int] = field(default_factory=set)

    # -- reaching assignments ----------------------------------------------------------------
    def reaching(self, name: str, at: Located) -> list[Binding]:
        scope = at.scope
        local = [b for b in scope.bindings_of(name) if b.order < at.order and not _excluded(b, at, self.index)]
        kept = [b for b in local if not any(o.order > b.order and _must(o, at, self.index) for o in local)]
        if any(_must(b, at, self.index) for b in kept):
            return kept
        return kept + self._outer(name, scope, exclude=kept)

    def _outer(self, name: str, scope: Scope, exclude: list[Binding]) -> list[Binding]:
        """Assignments from outside the scope: `self.X` in other methods, enclosing scopes."""
        parts = name.split(".")
        if scope.cls is not None and scope.self_name and parts[0] == scope.self_name and len(parts) > 1:
            rest = ".".join(parts[1:])
            found = []
            for other in self.index.scopes:  # the other methods (this one's own came in order)
                if other.cls is scope.cls and other.self_name and other is not scope:
                    found += [b for b in other.bindings_of(f"{other.self_name}.{rest}") if b not in exclude]
            return found
        if scope.bindings_of(name) or scope.parent is None:
            return []
        parent = scope.parent
        end = Located(node=parent.node, order=1 << 60, scope=parent, ancestors=(parent.node,))
        return self.reaching(name, end)

    # -- values -------------------------------------------------------------------------------
    def values(self, expr: cst.BaseExpression, at: Located) -> frozenset:
        name = dotted_name(expr)
        if name is not None:
            return self.name_values(name, at)
        if isinstance(expr, cst.IfExp):
            decided = lora_value(expr.test, self.index.flag, on=True)
            if decided is True:
                return self.values(expr.body, at)
            if decided is False:
                return self.values(expr.orelse, at)
            return self.values(expr.body, at) | self.values(expr.orelse, at)
        if isinstance(expr, cst.Call):
            return self._call_values(expr, at)
        return frozenset({Obj("opaque", id(expr))})

    def name_values(self, name: str, at: Located) -> frozenset:
        owner = trainer_model_owner(name, self.index)
        if owner is not None:
            return frozenset({Obj("trainer", owner, label=owner)})
        defs = self.reaching(name, at)
        if defs:
            return frozenset().union(*(self.binding_values(b) for b in defs))
        return frozenset({Obj("opaque", (name, id(at.scope)), label=name)})

    def binding_values(self, binding: Binding) -> frozenset:
        key = id(binding)
        cached = self._binding_values.get(key)
        if cached is not None:
            return cached
        if key in self._in_progress:
            return frozenset({Obj("opaque", key)})
        self._in_progress.add(key)
        try:
            value = binding.value
            if value is None:
                result = frozenset({Obj("opaque", key, label=binding.kind)})
            elif binding.position is not None:
                result = self._element_values(value, binding)
            else:
                result = self.values(value, binding.at)
        finally:
            self._in_progress.discard(key)
        self._binding_values[key] = result
        return result

    def _element_values(self, value: cst.BaseExpression, binding: Binding) -> frozenset:
        """`model, optimizer = accelerator.prepare(model, optimizer)`: element by element."""
        if isinstance(value, cst.Call) and last_part(callee_name(value) or "") == "prepare":
            positional = [a for a in value.args if a.keyword is None and not a.star]
            if binding.position is not None and binding.position < len(positional):
                return self.values(positional[binding.position].value, binding.at)
        if isinstance(value, (cst.Tuple, cst.List)) and binding.position is not None:
            if binding.position < len(value.elements):
                return self.values(value.elements[binding.position].value, binding.at)
        return frozenset({Obj("opaque", id(binding))})

    def _call_values(self, call: cst.Call, at: Located) -> frozenset:
        callee = callee_name(call) or ""
        method = last_part(callee) if callee else (call.func.attr.value if isinstance(call.func, cst.Attribute) else "")
        if method == "unwrap_model":
            # (v3) an identity step: what it unwraps is what it holds (`self.model =
            # self.accelerator.unwrap_model(self.model)`). Of an object this cannot follow, it is
            # a save through whatever trains it (contract: a save made through the trainer).
            arg = call_arg(call, 0, "model")
            inner = self.values(arg, at) if arg is not None else frozenset()
            if inner and all(o.kind != "opaque" for o in inner):
                return inner
            return frozenset({Obj("trainer", "", label="")})
        source = _identity_source(call)
        if source is not None:
            return self.values(source, at)
        wrapped = _wrapping_source(call, self.index)
        if wrapped is not None:
            inner = self.values(wrapped, at) if isinstance(wrapped, cst.BaseExpression) else frozenset()
            return frozenset({Obj("wrap", id(call), inner, label=method)})
        if NOT_A_MODEL_CLASS.search(callee) or NOT_A_MODEL_WORD.search(method):
            return frozenset({Obj("nonmodel", id(call), label=callee)})
        if method in LOADS or (method[:1].isupper() and not is_trainer_call(call, self.index)):
            return frozenset({Obj("load", id(call), label=last_part(callee.rsplit(".", 1)[0]) if method in LOADS else method)})
        return frozenset({Obj("opaque", id(call), label=method)})

    # -- trainers -----------------------------------------------------------------------------
    def trainers_at(self, at: Located) -> list[Trainer]:
        """The trainers whose construction reaches `at`, by name (exclusive branches are one)."""
        out = []
        for name in self.trainer_names():
            constructions = []
            for binding in self.reaching(name, at):
                constructions += self._constructions_of(binding)
            if constructions:
                out.append(Trainer(name, constructions))
        return out

    def constructions(self) -> list[tuple[str, Construction]]:
        """Every trainer construction of the module, with the name it is bound to."""
        out = []
        for name in self.trainer_names():
            for scope in self.index.scopes:
                for binding in scope.bindings_of(name):
                    out += [(name, c) for c in self._constructions_of(binding)]
        return out

    def trainer_names(self) -> list[str]:
        if self._trainer_names is None:  # asked once per save: computed once
            names = {b.name for b in self.index.trainer_builds}
            for name, call, _at in self.index.call_assignments:
                if self._factory(call) is not None:
                    names.add(name)
            self._trainer_names = sorted(names)
        return self._trainer_names

    def _constructions_of(self, binding: Binding) -> list[Construction]:
        value = binding.value
        if not isinstance(value, cst.Call) or binding.position is not None:
            return []
        if is_trainer_call(value, self.index):
            expr = call_arg(value, 0, "model")
            model = self.values(expr, binding.at) if expr is not None else frozenset({Obj("opaque", id(value))})
            return [Construction(value, binding.at, model, expr, _has_keyword(value, "peft_config"))]
        factory = self._factory(value)
        if factory is None:
            return []
        out = []
        for inner_call, inner_at in self._returned_constructions(factory):
            expr = call_arg(inner_call, 0, "model")
            model = self.values(expr, inner_at) if expr is not None else frozenset({Obj("opaque", id(inner_call))})
            model = self._substitute(model, factory, value, binding.at)
            out.append(Construction(inner_call, binding.at, model, None, _has_keyword(inner_call, "peft_config")))
        return out

    def _factory(self, call: cst.Call) -> Scope | None:
        """The same-file function a call runs, when it returns a trainer construction."""
        func = call.func
        name = func.value if isinstance(func, cst.Name) else (func.attr.value if isinstance(func, cst.Attribute) else None)
        if name is None or is_trainer_call(call, self.index):
            return None
        for scope in self.index.functions.get(name, ()):
            if self._returned_constructions(scope):
                return scope
        return None

    def _returned_constructions(self, scope: Scope) -> list[tuple[cst.Call, Located]]:
        found = []
        for ret in scope.returns:
            value = ret.node.value  # type: ignore[attr-defined]
            if isinstance(value, cst.Call) and is_trainer_call(value, self.index):
                found.append((value, ret))
                continue
            name = dotted_name(value) if value is not None else None
            if name is None:
                continue
            for binding in self.reaching(name, ret):
                if isinstance(binding.value, cst.Call) and is_trainer_call(binding.value, self.index):
                    found.append((binding.value, binding.at))
        return found

    def _substitute(self, model: frozenset, factory: Scope, call: cst.Call, at: Located) -> frozenset:
        """Replace the factory's parameters by what the caller passed for them."""
        func = factory.node
        assert isinstance(func, cst.FunctionDef)
        params = [p.name.value for p in (*func.params.posonly_params, *func.params.params)]
        if factory.self_name and params and params[0] == factory.self_name:
            params = params[1:]
        keywords = {p.name.value for p in func.params.kwonly_params}
        mapping: dict[object, frozenset] = {}
        for position, param in enumerate(params + sorted(keywords)):
            arg = call_arg(call, position if param not in keywords else 10_000, param)
            for binding in factory.bindings_of(param):
                if binding.kind == "param":
                    mapping[id(binding)] = self.values(arg, at) if arg is not None else frozenset(
                        {Obj("opaque", (id(call), param))})

        def sub(obj: Obj) -> frozenset:
            if obj.kind == "opaque" and obj.key in mapping:
                return mapping[obj.key]
            if obj.kind == "wrap" and obj.inner:
                inner = frozenset().union(*(sub(o) for o in obj.inner))
                return frozenset({Obj("wrap", (obj.key, id(call)), inner, obj.label)})
            return frozenset({obj})

        return frozenset().union(*(sub(o) for o in model)) if model else model


def _has_keyword(call: cst.Call, keyword: str) -> bool:
    return any(a.keyword is not None and a.keyword.value == keyword for a in call.args)


# -- control flow between an assignment and a use -----------------------------------------------
def _split(binding: Binding, at: Located) -> tuple[int, tuple[cst.CSTNode, ...], tuple[cst.CSTNode, ...]]:
    a, b = binding.at.ancestors, at.ancestors
    k = 0
    while k < len(a) and k < len(b) and a[k] is b[k]:
        k += 1
    return k, a, b


def _steps(binding: Binding, at: Located, index: ModuleIndex) -> Iterable[str]:
    """For each step from the common ancestor down to the assignment: "must", "may" or "never"."""
    k, chain, other = _split(binding, at)
    if k == 0:
        yield "may"
        return
    common = chain[k - 1]
    if k < len(chain) and k < len(other) and isinstance(common, cst.If):
        mine, theirs = chain[k], other[k]
        if {id(mine), id(theirs)} == {id(common.body), id(common.orelse)}:
            yield "never"  # the two sit in different branches of one `if`
            return
    for i in range(k - 1, len(chain) - 1):
        node, child = chain[i], chain[i + 1]
        if isinstance(node, cst.If) and (child is node.body or child is node.orelse):
            value = lora_value(node.test, index.flag, on=True)
            wanted = child is node.body
            if value is None:
                yield "may"
            else:
                yield "must" if value is wanted else "never"
        elif isinstance(node, (cst.For, cst.While, cst.Match, cst.ExceptHandler, cst.FunctionDef, cst.ClassDef,
                               cst.Lambda)) or (isinstance(node, cst.Try) and child is not node.body
                                                and child is not node.finalbody):
            yield "may"


def _excluded(binding: Binding, at: Located, index: ModuleIndex) -> bool:
    return any(step == "never" for step in _steps(binding, at, index))


def _must(binding: Binding, at: Located, index: ModuleIndex) -> bool:
    return all(step == "must" for step in _steps(binding, at, index))
