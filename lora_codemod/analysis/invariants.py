"""Invariants 7 and 8 of the contract, checked mechanically on a tree before and after a rewrite.

For every statement of both trees this computes, with the same rank evaluator the rules use,
whether rank 0 runs it and whether it is under a rank-zero guard. The rewrite may only insert
`model_to_save = T.model...` assignments and `if T.is_world_process_zero():` guards, remove the
`model.state_dict` patch (LC005), rename receivers and move statements out of guards (LC003), so once those inserted statements are set
aside the statements of the two trees pair up one to one, in order. A violation is:

- a collective call that was not under a rank-zero guard and now is (invariant 7);
- a guard added inside an existing rank-zero guard (invariant 7);
- a statement that rank 0 ran (or may have run) that rank 0 no longer runs (invariant 8);
- a statement moved under a guard that binds a name read after that guard (invariant 8);
- statements that no longer pair up (something was dropped, added or reordered).

The engine runs this on every file it rewrites and refuses to write one that fails it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import libcst as cst

from lora_codemod.analysis.collectives import Collectives
from lora_codemod.analysis.index import Located, ModuleIndex, Scope, build_index
from lora_codemod.analysis.logic import atoms
from lora_codemod.analysis.ranks import is_guarded_path, path_value
from lora_codemod.analysis.walk import walk

_UNWRAP = re.compile(r"^\w+ = [\w.]+\.model\.module if hasattr\([\w.]+\.model, (['\"])module\1\) else [\w.]+\.model$")
_STATE_DICT_COPY = re.compile(r"^\w+ = [\w.]+\.state_dict$")  # LC005 removes it with the patch
_GUARD_TEST = re.compile(r"^(?:[\w.]+\.is_world_process_zero\(\)|state\.is_world_process_zero|args\.should_save)$")


def _code(node: cst.CSTNode) -> str:
    return " ".join(cst.Module(body=[]).code_for_node(node).split())


@dataclass
class _Item:
    node: cst.CSTNode
    at: Located
    kind: str


class _Statements(cst.CSTVisitor):
    """Every small statement and compound statement, in order, with its ancestors in its scope."""

    def __init__(self, index: ModuleIndex) -> None:
        self.stack: list[cst.CSTNode] = []
        self.starts: list[int] = []
        self.items: list[_Item] = []
        self.scopes = {id(s.node): s for s in index.scopes}
        self.scope_stack: list[Scope] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.stack.append(node)
        if isinstance(node, (cst.Module, cst.FunctionDef)):
            self.starts.append(len(self.stack) - 1)
            self.scope_stack.append(self.scopes[id(node)])
        if isinstance(node, (cst.BaseSmallStatement, cst.BaseCompoundStatement)):
            at = Located(node=node, order=0, scope=self.scope_stack[-1], ancestors=tuple(self.stack[self.starts[-1]:]))
            self.items.append(_Item(node, at, type(node).__name__))
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        self.stack.pop()
        if self.starts and self.starts[-1] == len(self.stack):
            self.starts.pop()
            self.scope_stack.pop()


def _inserted(item: _Item) -> bool:
    """Statements a rule may add or remove: set aside on both sides before pairing."""
    node = item.node
    if isinstance(node, cst.Assign):
        code = _code(node)
        if _UNWRAP.match(code) or _STATE_DICT_COPY.match(code):
            return True
        return code.split("=", 1)[0].strip().endswith(".state_dict") and "get_peft_model_state_dict" in code
    if isinstance(node, cst.If):
        return _GUARD_TEST.match(_code(node.test)) is not None
    return False


def _choice_of_saves(node: cst.If) -> list[cst.SimpleStatementLine] | None:
    """LC001's plain-wrapper rewrite: an `if`/`elif`/`else` over hasattr/isinstance tests whose
    every branch is one and the same save, from different chains of one receiver. Its saves."""
    saves: list[cst.SimpleStatementLine] = []
    branch: cst.If | cst.Else | None = node
    while branch is not None:
        if isinstance(branch, cst.If) and not all(
                isinstance(a, cst.Call) and _code(a.func) in ("hasattr", "isinstance") for a in atoms(branch.test)):
            return None
        body = branch.body
        if not (isinstance(body, cst.IndentedBlock) and len(body.body) == 1
                and isinstance(body.body[0], cst.SimpleStatementLine)):
            return None
        saves.append(body.body[0])
        branch = branch.orelse if isinstance(branch, cst.If) else None
    shapes = {_SAVE_RECEIVER.sub("<receiver>.save_pretrained(", _code(s)) for s in saves}
    if len(saves) < 2 or len(shapes) != 1 or ".save_pretrained(" not in next(iter(shapes)):
        return None
    return saves


def _view(module: cst.Module, flag: re.Pattern[str], trainer_classes: frozenset[str],
          index: ModuleIndex | None = None) -> tuple[ModuleIndex, list[_Item], list[_Item]]:
    index = index or build_index(module, flag, module.code, trainer_classes)
    visitor = _Statements(index)
    walk(module, visitor)
    # A save that became a choice between chains: the choice and every copy but the first are
    # set aside, and the first copy is read as the save, running where the save ran.
    aside: set[int] = set()
    tests: set[int] = set()
    for item in visitor.items:
        if isinstance(item.node, cst.If) and id(item.node) not in aside:
            saves = _choice_of_saves(item.node)
            if saves is not None:
                branch: cst.BaseCompoundStatement | None = item.node
                while isinstance(branch, cst.If):
                    aside.add(id(branch))
                    tests.add(id(branch.test))
                    branch = branch.orelse if isinstance(branch.orelse, cst.If) else None
                for copy in saves[1:]:
                    aside.add(id(copy))
                    aside |= {id(small) for small in copy.body}
    kept = []
    for i in visitor.items:
        if _inserted(i) or id(i.node) in aside:
            continue
        if tests:
            i.at = _PathWithout(i.at, tests)
        kept.append(i)
    guards = [i for i in visitor.items if isinstance(i.node, cst.If) and _inserted(i)]
    return index, kept, guards


class _PathWithout(Located):
    """A location whose path leaves out the tests of set-aside choices."""

    def __init__(self, at: Located, tests: set[int]) -> None:
        super().__init__(node=at.node, order=at.order, scope=at.scope, ancestors=at.ancestors)
        self._tests = tests

    def path(self, stop=None):
        return [(t, w) for t, w in super().path(stop) if id(t) not in self._tests]


# What a save saves from is the rules' business; where it runs is the invariants'.
_SAVE_RECEIVER = re.compile(r"[\w.]+(?:\([^()]*\)[\w.]*)*\.save_pretrained\(")
_NEW_NAME = re.compile(r"\b(?:lora_)?model_to_save(?:_\d+)?\b")


def _header(item: _Item) -> str:
    node = item.node
    if isinstance(node, (cst.If, cst.While)):
        return f"{item.kind} {_code(node.test)}"
    if isinstance(node, cst.BaseCompoundStatement):
        return item.kind
    return _SAVE_RECEIVER.sub("<receiver>.save_pretrained(", _code(node))  # a receiver may gain a chain


def _same(before: _Item, after: _Item) -> bool:
    """The same statement, up to receivers renamed to the name bound from the trainer's model."""
    old, new = _header(before), _header(after)
    if old == new:
        return True
    pieces = _NEW_NAME.split(new)
    if len(pieces) == 1:
        return False
    pattern = r"(?:[\w.]+|[\w.]+\(.*?\))".join(map(re.escape, pieces))
    return re.fullmatch(pattern, old) is not None


def _bound_names(node: cst.CSTNode) -> set[str]:
    names: set[str] = set()
    targets: list[cst.BaseExpression] = []
    if isinstance(node, cst.Assign):
        targets = [t.target for t in node.targets]
    elif isinstance(node, (cst.AnnAssign, cst.AugAssign)):
        targets = [node.target]
    for target in targets:
        for sub in ([e.value for e in target.elements] if isinstance(target, (cst.Tuple, cst.List)) else [target]):
            text = _code(sub)
            if re.fullmatch(r"[\w.]+", text):
                names.add(text)
    return names


def violations(before: cst.Module, after: cst.Module, flag: re.Pattern[str],
               trainer_classes: frozenset[str] = frozenset(), before_index: ModuleIndex | None = None) -> list[str]:
    """What the rewrite from `before` to `after` broke (empty: invariants 7 and 8 hold).
    `before_index`: the rules' own index of `before`, when there is one (not built twice)."""
    index_b, items_b, guards_b = _view(before, flag, trainer_classes, before_index)
    index_a, items_a, guards_a = _view(after, flag, trainer_classes)
    problems: list[str] = []
    # Simple statements keep their order (an LC003 move takes a statement out of the `if` it
    # led, so it stays before that `if`'s other statements); compound statements keep theirs.
    for kind in (cst.BaseSmallStatement, cst.BaseCompoundStatement):
        seq_b = [i for i in items_b if isinstance(i.node, kind)]
        seq_a = [i for i in items_a if isinstance(i.node, kind)]
        if len(seq_b) != len(seq_a) or not all(_same(b, a) for b, a in zip(seq_b, seq_a)):
            return ["the statements before and after do not pair up: something was added, dropped or reordered"]
    items_b = sorted(items_b, key=lambda i: isinstance(i.node, cst.BaseCompoundStatement))
    items_a = sorted(items_a, key=lambda i: isinstance(i.node, cst.BaseCompoundStatement))

    nested_b = sum(1 for g in guards_b if is_guarded_path(g.at.path()))
    nested_a = sum(1 for g in guards_a if is_guarded_path(g.at.path()))
    if nested_a > nested_b:
        problems.append("a rank-zero guard was added inside an existing rank-zero guard")

    for b, a in zip(items_b, items_a):
        path_b, path_a = b.at.path(), a.at.path()
        rank0_b, rank0_a = path_value(path_b, 0), path_value(path_a, 0)
        if (rank0_b is True and rank0_a is not True) or (rank0_b is None and rank0_a is False):
            problems.append(f"`{_code(a.node)[:60]}` no longer runs on rank 0")
        if is_guarded_path(path_a) and not is_guarded_path(path_b):
            names = _bound_names(a.node)
            guard = next((n for n in reversed(a.at.ancestors) if isinstance(n, cst.If)
                          and _GUARD_TEST.match(_code(n.test))), None)
            if names and guard is not None:
                end = index_a.span(guard)[1]
                late = sorted(n for n in names if index_a.read_after(a.at.scope, {n}, end))
                if late:
                    problems.append(f"`{late[0]}` is assigned under a new guard and read after it")

    calls_b, calls_a = Collectives(index_b).calls, Collectives(index_a).calls
    if len(calls_b) != len(calls_a):
        problems.append("the collective calls before and after do not pair up")
    else:
        for (at_b, name), (at_a, _) in zip(calls_b, calls_a):
            if is_guarded_path(at_a.path()) and not is_guarded_path(at_b.path()):
                problems.append(f"`{name}()` was moved under a rank-zero guard")
    return problems
