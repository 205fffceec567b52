"""Plain wrappers: where the LoRA lives inside them, and which saves can reach it (contract v3).

A *plain wrapper* is a class of this file that subclasses only `nn.Module` (or other plain
wrappers), with no `save_pretrained` and no `__getattr__` of its own: saving it raises
`AttributeError`. A LoRA *setup* puts `get_peft_model`'s result somewhere relative to such an
object, maybe choosing the place with tests at run time:

    if hasattr(model, "model") and hasattr(model.model, "text_model"):
        model.model.text_model = get_peft_model(model.model.text_model, cfg)   # chain model.text_model
    elif hasattr(model, "model"):
        model.model = get_peft_model(model.model, cfg)                         # chain model
    else:
        model = get_peft_model(model, cfg)                                     # the wrapper itself

The facts computed here, and nothing else (the rules only read them):

- `WrapperClass.always`: the attributes every instance has: what the class body defines and
  what `__init__` assigns to `self` on every path that completes (a path that raises does not);
- a *placement*: one such assignment, with the tests that lead to it in its own scope, found in
  same-file setup functions called with the wrapper (their parameter stands for the object), in
  the scope that holds the wrapper (`model.model = get_peft_model(model.model, cfg)`), and in
  the wrapper's own methods (`self.a = get_peft_model(self.a, cfg)`);
- *correlated tests*: `hasattr(X.chain, "a")` and `isinstance(X.chain, C)` on the same object,
  at the setup and at a save, are one variable, keyed by the chain relative to the object. A
  test the class decides (`hasattr(w, "model")` when `__init__` always assigns `self.model`)
  has its value; every other test is unknown (never decided false). A placement is *live* when
  its tests can hold; a placement is *possible at a save* when its tests and the save's own
  tests can hold together; a save whose own tests cannot hold never runs.
- the *mirror*: when the possible placements are the branches of one `if`/`elif`/`else` of the
  setup, each holding one placement, and the tests name only the object, the setup's own tests
  re-rooted on a save's receiver choose the same place at save time (an approximation: the setup
  ran them before `get_peft_model` changed the object, which is why a fix built on it is unsafe).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Sequence

import libcst as cst

from lora_codemod.analysis.index import Binding, Located, ModuleIndex, Scope
from lora_codemod.analysis.logic import Truth, atoms, conjunction
from lora_codemod.analysis.names import callee_name, dotted_name, last_part, string_value
from lora_codemod.analysis.values import PEFT_LOAD, Facts, Obj

# Calls whose result is a PeftModel around their first argument.
_PEFT_WRAP = frozenset({"get_peft_model"})
# Names a mirrored test may use besides the object itself.
_BUILTINS = frozenset({"hasattr", "isinstance", "getattr", "callable", "type", "len", "True", "False", "None"})
RECEIVER = "__lora_codemod_receiver__"  # the placeholder a mirrored test is re-rooted on
_MAX_VARIABLES = 10

Chain = tuple[str, ...]
Key = tuple[str, Chain, str]  # ("hasattr" | "isinstance", chain from the object, attribute or class)


@dataclass(frozen=True)
class WrapperClass:
    name: str
    always: frozenset[str]  # attributes every instance has
    getattr_hook: bool  # defines __getattr__ (itself or a same-file base): save_pretrained may be forwarded


@dataclass(frozen=True)
class Placement:
    chain: Chain  # where get_peft_model's result is stored, from the wrapper; () is the wrapper itself
    conditions: tuple[tuple[cst.BaseExpression, bool], ...]  # the tests that lead there, in its scope
    root: str  # the name the assignment and its tests start from (a parameter, a variable, `self`)
    at: Located
    live: bool  # its tests can hold

    @property
    def shown(self) -> str:
        return "." + ".".join(self.chain) if self.chain else "the wrapper itself"


@dataclass(frozen=True)
class Mirror:
    """The setup's own `if`/`elif`/`else`: per branch the test (re-rooted on RECEIVER; None for
    `else`) and the chain that branch saves from."""

    branches: tuple[tuple[str | None, Chain], ...]


@dataclass
class Setup:
    wrapper: WrapperClass
    where: str  # the setup function's name, or the scope the placements are in
    placements: list[Placement] = field(default_factory=list)  # in source order
    complete: bool = True  # every get_peft_model result stored relative to the object was understood

    @property
    def live(self) -> list[Placement]:
        return [p for p in self.placements if p.live]


@dataclass(frozen=True)
class AtSave:
    """What the wrapper facts say of one save of the wrapper object."""

    setup: Setup
    possible: tuple[Placement, ...]  # the live placements the save's own tests allow
    dead: bool  # the save's own tests cannot hold: it never runs
    mirror: Mirror | None  # the setup's tests, when they choose between the possible placements


class WrapperFacts:
    """The plain wrappers of a module and their LoRA setups; computed on demand, once."""

    def __init__(self, index: ModuleIndex, facts: Facts) -> None:
        self.index = index
        self.facts = facts
        self._setups: dict[frozenset, Setup | None] = {}

    # -- classes ------------------------------------------------------------------------------
    @cached_property
    def classes(self) -> dict[str, WrapperClass]:
        """Every same-file `nn.Module` class without save_pretrained, by name."""
        out: dict[str, WrapperClass] = {}
        for name in self.index.plain_module_classes:
            node = self.index.class_nodes.get(name)
            if node is None:
                continue
            lineage = self._lineage(name)
            always: set[str] = set()
            for cls in lineage:
                always |= _class_attributes(self.index.class_nodes[cls])
            init = next((_method(self.index.class_nodes[c], "__init__") for c in lineage
                         if _method(self.index.class_nodes[c], "__init__") is not None), None)
            if init is not None:
                always |= _init_assigns(init)
            hook = any(c in self.index.classes_with_getattr for c in lineage)
            out[name] = WrapperClass(name, frozenset(always), hook)
        return out

    def _lineage(self, name: str) -> list[str]:
        """The class and its same-file bases, nearest first."""
        out, work = [], [name]
        while work:
            cls = work.pop(0)
            if cls in out or cls not in self.index.class_nodes:
                continue
            out.append(cls)
            work += self.index.class_bases.get(cls, [])
        return out

    def roots_at(self, at: Located, cls: WrapperClass) -> set[str]:
        """The names that the tests around `at` inspect and that hold a `cls` wrapper
        (directly, through its setup, or as the model of a trainer that trains it)."""
        out: set[str] = set()
        for test, _ in at.path():
            for atom in atoms(test):
                if not (isinstance(atom, cst.Call) and callee_name(atom) in ("hasattr", "isinstance") and atom.args):
                    continue
                subject = dotted_name(atom.args[0].value)
                if subject is None:
                    continue
                parts = subject.split(".")
                for i in range(1, len(parts) + 1):  # `model`, or `trainer.model` of `trainer.model.model`
                    root = ".".join(parts[:i])
                    if root in out or self._holds_wrapper(root, at, cls):
                        out.add(root)
                        break
        return out

    def _holds_wrapper(self, name: str, at: Located, cls: WrapperClass) -> bool:
        values = self.facts.name_values(name, at)
        objects: set[Obj] = set()
        for obj in values:
            if obj.kind == "trainer":
                for trainer in self.facts.trainers_at(at):
                    if trainer.name == obj.key or not obj.key:
                        objects |= trainer.model
            else:
                objects.add(obj)
        return any(o.label == cls.name for o in self.wrapper_objects(objects))

    def wrapper_objects(self, objects: Iterable[Obj]) -> list[Obj]:
        """The plain-wrapper instances among `objects` and what same-file setups were given."""
        return [o for o in through_setups(frozenset(objects), self.index)
                if o.kind == "load" and o.label in self.classes]

    # -- setups -------------------------------------------------------------------------------
    def setup_of(self, objects: frozenset) -> Setup | None:
        """The setup of the one plain wrapper that `objects` (a trainer's model) may be."""
        if objects not in self._setups:
            self._setups[objects] = self._find_setup(objects)
        return self._setups[objects]

    def _find_setup(self, objects: frozenset) -> Setup | None:
        wrappers = self.wrapper_objects(objects)
        if len({o.label for o in wrappers}) != 1:
            return None
        wrapper_cls = self.classes[wrappers[0].label]
        instances = set(wrappers)
        setup = Setup(wrapper=wrapper_cls, where="")
        wheres: list[str] = []
        # Same-file setup functions called with the wrapper: `model = setup_lora_config(model, cfg)`.
        visited: set[str] = set()
        for obj in through_setups(objects, self.index):
            if obj.kind != "wrap" or obj.label not in self.index.peft_factories or obj.label in visited:
                continue
            if not (obj.ancestors() & instances or set(obj.inner) & instances):
                continue
            visited.add(obj.label)
            for scope in self.index.functions.get(obj.label, ()):
                root = _first_parameter(scope)
                if root is None:
                    setup.complete = False
                    continue
                found = self._placements_in(scope, wrapper_cls, lambda name, _b, r=root: name == r)
                if found is None:
                    setup.complete = False
                    continue
                setup.placements += found
                wheres.append(obj.label)
        # The scopes that hold the wrapper itself, and the wrapper's own methods.
        for scope in self.index.scopes:
            if scope.cls is not None and scope.cls.name.value == wrapper_cls.name and scope.self_name:
                holds = (lambda name, _b, s=scope.self_name: name == s)
            else:
                holds = (lambda name, b: name != "self" and self._holds(name, b.at, instances))
            found = self._placements_in(scope, wrapper_cls, holds, direct_only=True)
            if found:
                setup.placements += found
                wheres.append(scope.name)
        if not setup.placements:
            setup.complete = False  # no placement found: nothing says where the LoRA is
            return setup
        first = setup.placements[0].at.scope
        setup.placements.sort(key=lambda p: (p.at.scope is not first, p.at.order))
        setup.where = wheres[0] if len(set(wheres)) == 1 else ", ".join(sorted(set(wheres)))
        return setup

    def _holds(self, name: str, at: Located, instances: set[Obj]) -> bool:
        return bool(set(self.wrapper_objects(self.facts.name_values(name, at))) & instances)

    def _placements_in(self, scope: Scope, wrapper: WrapperClass, holds, direct_only: bool = False
                       ) -> list[Placement] | None:
        """The placements made in `scope` on the object that `holds(root, binding)` names; None
        when a PeftModel is made there from the object but stored where this cannot follow."""
        out: list[Placement] = []
        for target, bindings in scope.bindings.items():
            for binding in bindings:
                if not _makes_peft_model(binding):
                    continue
                root, _, rest = target.partition(".")
                chain: Chain = tuple(rest.split(".")) if rest else ()
                if not holds(root, binding):
                    if not direct_only and _wraps_from(binding, root_of=holds):
                        return None  # `text = get_peft_model(model.model.text_model)`: stored elsewhere
                    continue
                if direct_only and not chain:
                    continue  # `model = get_peft_model(model)` in a caller: the trainer gets a PeftModel
                conditions = tuple(binding.at.path())
                live = self.decide(conditions, {root}, wrapper) is not False
                out.append(Placement(chain, conditions, root, binding.at, live))
        return out

    # -- tests --------------------------------------------------------------------------------
    @staticmethod
    def decide(conditions: Sequence[tuple[cst.BaseExpression, bool]], roots: set[str], cls: WrapperClass) -> Truth:
        """Can the conditions hold, by the class's facts alone? (False: never; None: maybe)."""

        def leaf(expr: cst.BaseExpression) -> Truth:
            key = atom_key(expr, roots)
            return decided(key, cls) if key is not None else None

        return conjunction(list(conditions), leaf)

    def at_save(self, setup: Setup, at: Located, roots: set[str]) -> AtSave:
        """Which placements a save of the wrapper (its receiver's root among `roots`) can meet."""
        cls = setup.wrapper
        save_conditions = [c for c in at.path() if any(atom_key(a, roots) for a in atoms(c[0]))]
        live = setup.live
        keys: set[Key] = set()
        for test, _ in save_conditions:
            keys |= {k for a in atoms(test) if (k := atom_key(a, roots)) is not None and decided(k, cls) is None}
        for p in live:
            for test, _ in p.conditions:
                keys |= {k for a in atoms(test) if (k := atom_key(a, {p.root})) is not None
                         and decided(k, cls) is None}
        if len(keys) > _MAX_VARIABLES:
            return AtSave(setup, tuple(live), False, self.mirror(setup, tuple(live)))
        order = sorted(keys)
        possible: set[int] = set()
        runs = False
        for values in itertools.product((True, False), repeat=len(order)):
            assignment = dict(zip(order, values))

            def leaf_for(names: set[str]):
                def leaf(expr: cst.BaseExpression) -> Truth:
                    key = atom_key(expr, names)
                    if key is None:
                        return None
                    value = decided(key, cls)
                    return value if value is not None else assignment.get(key)
                return leaf

            if conjunction(save_conditions, leaf_for(roots)) is False:
                continue
            runs = True
            for i, p in enumerate(live):
                if conjunction(list(p.conditions), leaf_for({p.root})) is not False:
                    possible.add(i)
        chosen = tuple(p for i, p in enumerate(live) if i in possible)
        return AtSave(setup, chosen, not runs, self.mirror(setup, chosen) if len(chosen) > 1 else None)

    def mirror(self, setup: Setup, possible: tuple[Placement, ...]) -> Mirror | None:
        """The setup's `if`/`elif`/`else` that chooses between `possible`, re-rooted; None when
        the placements are not the branches of one such chain or its tests name more than the object."""
        if not possible:
            return None
        heads = {id(_chain_head(p, self.index)) for p in possible}
        head = _chain_head(possible[0], self.index)
        if head is None or len(heads) != 1:
            return None
        root = possible[0].root
        if any(p.root != root or p.at.scope is not possible[0].at.scope for p in possible):
            return None
        placed = {id(_branch_of(p)): p for p in setup.placements if _branch_of(p) is not None}
        branches: list[tuple[str | None, Chain]] = []
        node: cst.If | cst.Else | None = head
        module_names = {n for n, bs in self.index.scopes[0].bindings.items() if bs}
        while node is not None:
            body = node.body
            placement = placed.get(id(body))
            if placement is None or placement.root != root:
                return None  # a branch that places nothing, or places it from another name
            if isinstance(node, cst.If):
                test = _rerooted(node.test, root, module_names)
                if test is None:
                    return None
                branches.append((test, placement.chain))
                node = node.orelse if isinstance(node.orelse, (cst.If, cst.Else)) else None
            else:
                branches.append((None, placement.chain))
                node = None
        if not {p.chain for p in possible} <= {chain for _, chain in branches}:
            return None
        return Mirror(tuple(branches))


# -- helpers ----------------------------------------------------------------------------------------
def through_setups(objects: frozenset, index: ModuleIndex) -> set[Obj]:
    """The objects, and what a same-file LoRA setup function was given (such a function may
    return the very object it was given, with LoRA set on a model inside it)."""
    out: set[Obj] = set()
    work = list(objects)
    while work:
        obj = work.pop()
        if obj in out:
            continue
        out.add(obj)
        if obj.kind == "wrap" and obj.label in index.peft_factories:
            work.extend(obj.inner)
    return out


def atom_key(expr: cst.BaseExpression, roots: set[str]) -> Key | None:
    """`hasattr(R.a.b, "x")` -> ("hasattr", ("a", "b"), "x"); `isinstance(R, C)` -> ("isinstance", (), "C"),
    for R in `roots`; anything else None."""
    if not isinstance(expr, cst.Call) or len(expr.args) != 2 or any(a.keyword or a.star for a in expr.args):
        return None
    fn = callee_name(expr)
    if fn not in ("hasattr", "isinstance"):
        return None
    subject = dotted_name(expr.args[0].value)
    if subject is None:
        return None
    root = next((r for r in roots if subject == r or subject.startswith(r + ".")), None)
    if root is None:
        return None
    rest = subject[len(root) + 1:]
    chain: Chain = tuple(rest.split(".")) if rest else ()
    if fn == "hasattr":
        attr = string_value(expr.args[1].value)
        return ("hasattr", chain, attr) if attr is not None else None
    cls = dotted_name(expr.args[1].value)
    return ("isinstance", chain, last_part(cls)) if cls is not None else None


def decided(key: Key, cls: WrapperClass) -> Truth:
    """The value the wrapper class gives a test on the object itself; None when it cannot tell."""
    kind, chain, what = key
    if chain:
        return None
    if kind == "hasattr":
        return True if what in cls.always else None
    if kind == "isinstance":
        return True if what in (cls.name, "Module") else None
    return None


def _makes_peft_model(binding: Binding) -> bool:
    value = binding.value
    if not isinstance(value, cst.Call) or binding.position is not None:
        return False
    callee = callee_name(value) or ""
    return last_part(callee) in _PEFT_WRAP or PEFT_LOAD.search(callee) is not None


def _wraps_from(binding: Binding, root_of) -> bool:
    """Is the wrapped model (first argument) a chain from a name that holds the object?"""
    value = binding.value
    assert isinstance(value, cst.Call)
    positional = [a for a in value.args if a.keyword is None and not a.star]
    arg = positional[0].value if positional else next(
        (a.value for a in value.args if a.keyword is not None and a.keyword.value == "model"), None)
    name = dotted_name(arg) if arg is not None else None
    return name is not None and root_of(name.split(".")[0], binding)


def _first_parameter(scope: Scope) -> str | None:
    node = scope.node
    if not isinstance(node, cst.FunctionDef):
        return None
    params = [p.name.value for p in (*node.params.posonly_params, *node.params.params)]
    if scope.self_name and params and params[0] == scope.self_name:
        params = params[1:]
    return params[0] if params else None


def _method(cls: cst.ClassDef, name: str) -> cst.FunctionDef | None:
    body = cls.body.body if isinstance(cls.body, cst.IndentedBlock) else ()
    for statement in body:
        if isinstance(statement, cst.FunctionDef) and statement.name.value == name:
            return statement
    return None


def _class_attributes(cls: cst.ClassDef) -> set[str]:
    """Names the class body defines: methods, properties, class attributes."""
    out: set[str] = set()
    body = cls.body.body if isinstance(cls.body, cst.IndentedBlock) else ()
    for statement in body:
        if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            out.add(statement.name.value)
        elif isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                targets = ([t.target for t in small.targets] if isinstance(small, cst.Assign)
                           else [small.target] if isinstance(small, cst.AnnAssign) else [])
                out |= {t.value for t in targets if isinstance(t, cst.Name)}
    return out


def _init_assigns(init: cst.FunctionDef) -> set[str]:
    """Attributes `__init__` assigns to `self` on every path that completes."""
    params = [p.name.value for p in (*init.params.posonly_params, *init.params.params)]
    if not params:
        return set()
    self_name = params[0]
    falls, returns = _flow(init.body.body if isinstance(init.body, cst.IndentedBlock) else (), set(), self_name)
    return _meet(falls, returns) or set()


def _meet(a: set[str] | None, b: set[str] | None) -> set[str] | None:
    """Paths that complete either way: what both assign (None: no such path)."""
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def _flow(statements: Sequence[cst.CSTNode], assigned: set[str] | None, me: str
          ) -> tuple[set[str] | None, set[str] | None]:
    """(assigned on the paths that fall through, assigned on the paths that return)."""
    returned: set[str] | None = None
    for statement in statements:
        if assigned is None:
            break
        assigned, ret = _step(statement, assigned, me)
        returned = _meet(returned, ret)
    return assigned, returned


def _step(statement: cst.CSTNode, assigned: set[str], me: str) -> tuple[set[str] | None, set[str] | None]:
    if isinstance(statement, cst.SimpleStatementLine):
        current = set(assigned)
        for small in statement.body:
            if isinstance(small, cst.Raise):
                return None, None
            if isinstance(small, cst.Return):
                return None, current
            current |= _self_targets(small, me)
        return current, None
    if isinstance(statement, cst.If):
        body = _flow(_block(statement.body), assigned, me)
        if isinstance(statement.orelse, cst.If):
            other = _step(statement.orelse, assigned, me)
        elif isinstance(statement.orelse, cst.Else):
            other = _flow(_block(statement.orelse.body), assigned, me)
        else:
            other = (assigned, None)
        return _meet(body[0], other[0]), _meet(body[1], other[1])
    if isinstance(statement, cst.Try):
        falls, returned = _flow(_block(statement.body), assigned, me)
        if statement.orelse is not None and falls is not None:
            falls, more = _flow(_block(statement.orelse.body), falls, me)
            returned = _meet(returned, more)
        for handler in statement.handlers:  # the body may have stopped anywhere: start from before it
            h_falls, h_ret = _flow(_block(handler.body), assigned, me)
            falls, returned = _meet(falls, h_falls), _meet(returned, h_ret)
        if statement.finalbody is not None:
            extra = _flow(_block(statement.finalbody.body), set(), me)[0]
            if extra is None:
                return None, None
            falls = falls | extra if falls is not None else None
            returned = returned | extra if returned is not None else None
        return falls, returned
    if isinstance(statement, cst.With):
        return _flow(_block(statement.body), assigned, me)
    if isinstance(statement, (cst.For, cst.While)):
        _falls, returned = _flow(_block(statement.body), assigned, me)  # the body may not run
        return assigned, (returned & assigned if returned is not None else None)
    return assigned, None


def _block(suite: cst.BaseSuite) -> Sequence[cst.CSTNode]:
    if isinstance(suite, cst.IndentedBlock):
        return suite.body
    return [cst.SimpleStatementLine(body=suite.body)] if isinstance(suite, cst.SimpleStatementSuite) else ()


def _self_targets(small: cst.BaseSmallStatement, me: str) -> set[str]:
    targets: list[cst.BaseExpression] = []
    if isinstance(small, cst.Assign):
        targets = [t.target for t in small.targets]
    elif isinstance(small, cst.AnnAssign) and small.value is not None:
        targets = [small.target]
    elif isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
        call = small.value  # setattr(self, "x", value)
        if callee_name(call) == "setattr" and len(call.args) >= 2 and dotted_name(call.args[0].value) == me:
            attr = string_value(call.args[1].value)
            return {attr} if attr else set()
    out: set[str] = set()
    for target in targets:
        elements = [e.value for e in target.elements] if isinstance(target, (cst.Tuple, cst.List)) else [target]
        for element in elements:
            if isinstance(element, cst.Attribute) and isinstance(element.value, cst.Name) and element.value.value == me:
                out.add(element.attr.value)
    return out


def _branch_of(p: Placement) -> cst.BaseSuite | None:
    """The block of the innermost `if`/`elif`/`else` branch the placement is a statement of."""
    chain = p.at.ancestors
    for i in range(len(chain) - 1, 0, -1):
        node, parent = chain[i], chain[i - 1]
        if isinstance(parent, (cst.If, cst.Else)) and node is parent.body:
            return node  # type: ignore[return-value]
        if isinstance(node, (cst.BaseCompoundStatement,)) and node is not p.at.node:
            return None  # nested in something else first (a with, a try, a for)
    return None


def _chain_head(p: Placement, index: ModuleIndex) -> cst.If | None:
    """The first `if` of the `if`/`elif`/`else` chain whose branch the placement is in."""
    chain = p.at.ancestors
    body = _branch_of(p)
    if body is None:
        return None
    k = next(i for i, n in enumerate(chain) if n is body)
    owner = chain[k - 1]
    i = k - 1
    if isinstance(owner, cst.Else):
        i -= 1  # the Else's own if
    while i > 0 and isinstance(chain[i - 1], cst.If) and chain[i - 1].orelse is chain[i]:
        i -= 1  # an elif: climb to the chain's first if
    head = chain[i]
    return head if isinstance(head, cst.If) else None


def _rerooted(test: cst.BaseExpression, root: str, allowed: set[str]) -> str | None:
    """The test's source with the object's name replaced by RECEIVER; None when it names
    anything else the save could not see (a local variable of the setup)."""
    not_names: set[int] = set()  # attribute parts and keyword names are not variables

    class Collect(cst.CSTVisitor):
        def visit_Attribute(self, node: cst.Attribute) -> None:
            not_names.add(id(node.attr))

        def visit_Arg(self, node: cst.Arg) -> None:
            if node.keyword is not None:
                not_names.add(id(node.keyword))

    test.visit(Collect())
    bad = False

    class Reroot(cst.CSTTransformer):
        def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
            nonlocal bad
            if id(original_node) in not_names:
                return updated_node
            if original_node.value == root:
                return updated_node.with_changes(value=RECEIVER)
            if original_node.value not in _BUILTINS and original_node.value not in allowed:
                bad = True
            return updated_node

    code = cst.Module(body=[]).code_for_node(test.visit(Reroot()))
    return None if bad else code
