"""One pass over a module that records everything the facts of analysis/ are computed from.

The visitor keeps its own ancestor stack, so each recorded node carries the chain of nodes
that enclose it (up to its scope). The fact modules (values, ranks, collectives, lora) answer
"what does this name hold here", "which ranks run this", "is this call collective" as queries
over these records, without walking the tree again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator, Union

import libcst as cst

from lora_codemod.analysis import distributed
from lora_codemod.analysis.lora import Branch, lora_branch
from lora_codemod.analysis.names import callee_name, dotted_name, last_part
from lora_codemod.analysis.walk import walk

ScopeNode = Union[cst.Module, cst.FunctionDef]
# Nodes whose `.body` is a block of statements that an `if` branch owns.
BlockOwner = Union[cst.If, cst.Else]
Path = list[tuple[cst.BaseExpression, bool]]  # (test, wanted): the conditions a node runs under


@dataclass(eq=False)
class Scope:
    node: ScopeNode
    parent: Scope | None
    cls: cst.ClassDef | None = None  # the class a method belongs to
    self_name: str | None = None  # a method's first parameter
    identifiers: set[str] = field(default_factory=set)  # every Name used in the scope's subtree
    bindings: dict[str, list[Binding]] = field(default_factory=dict)
    reads: dict[str, list[int]] = field(default_factory=dict)  # dotted name -> orders where it is read
    returns: list[Located] = field(default_factory=list)

    def bindings_of(self, name: str) -> list[Binding]:
        return self.bindings.get(name, [])

    @property
    def name(self) -> str:
        return self.node.name.value if isinstance(self.node, cst.FunctionDef) else "<module>"


@dataclass(eq=False)
class Binding:
    order: int  # the end of the binding statement: reads inside its value come before it
    target: str
    value: cst.BaseExpression | None  # None: bound by a parameter, for, with, import, ...
    at: Located  # the binding statement (or the function, for a parameter)
    position: int | None = None  # `a, b = accelerator.prepare(x, y)`: which element
    kind: str = "assign"  # "assign", "param", "other"

    @property
    def container(self) -> cst.CSTNode:
        for node in reversed(self.at.ancestors):
            if isinstance(node, _CONTAINERS):
                return node
        return self.at.ancestors[0]


@dataclass(eq=False)
class Located:
    """A recorded node with its scope, visit order and enclosing nodes (outermost first)."""

    node: cst.CSTNode
    order: int
    scope: Scope
    ancestors: tuple[cst.CSTNode, ...]

    def encloses(self, owner: cst.CSTNode) -> bool:
        return any(a is owner for a in self.ancestors)

    def enclosing_branches(self) -> Iterator[tuple[cst.If, Branch, BlockOwner]]:
        """The `if` branches around the node, innermost first: (if, BODY/ELSE, owner of the block).

        An `elif` is neither the body nor the else of its parent `if`, so it is skipped.
        """
        chain = self.ancestors
        for i in range(len(chain) - 2, -1, -1):
            node = chain[i]
            if not isinstance(node, cst.If):
                continue
            child = chain[i + 1]
            if child is node.body:
                yield node, Branch.BODY, node
            elif child is node.orelse and isinstance(child, cst.Else):
                yield node, Branch.ELSE, child

    def path(self, stop: cst.CSTNode | None = None) -> Path:
        """The conditions of every `if` branch the node runs in, outermost first (an `elif`
        adds its parents' tests, negated). `stop`: only the branches inside that node."""
        chain = self.ancestors
        start = 0
        if stop is not None:
            for i, node in enumerate(chain):
                if node is stop:
                    start = i
                    break
        out: Path = []
        for i in range(start, len(chain) - 1):
            node, child = chain[i], chain[i + 1]
            if isinstance(node, cst.If):
                if child is node.body:
                    out.append((node.test, True))
                elif child is node.orelse:
                    out.append((node.test, False))
        return out

    def statement(self) -> cst.CSTNode:
        """The innermost statement holding the node (a small statement's line, or a compound)."""
        for node in reversed(self.ancestors):
            if isinstance(node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)) and node is not self.node:
                return node
        return self.node


@dataclass
class TrainerBuild:
    """`T = C(...)` where C is a Trainer class."""

    name: str
    call: cst.Call
    at: Located


@dataclass
class ModuleIndex:
    module: cst.Module
    flag: re.Pattern[str]
    source_text: str
    scopes: list[Scope] = field(default_factory=list)
    trainer_builds: list[TrainerBuild] = field(default_factory=list)
    trainer_classes: set[str] = field(default_factory=set)  # same-file and aliased Trainer class names
    save_calls: list[Located] = field(default_factory=list)  # X.save_pretrained(...)
    calls: list[Located] = field(default_factory=list)  # every call
    statements: list[cst.CSTNode] = field(default_factory=list)  # every small and compound statement, in order
    call_assignments: list[tuple[str, cst.Call, Located]] = field(default_factory=list)  # T = f(...)
    ifs: dict[int, tuple[cst.If, Located]] = field(default_factory=dict)
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)  # id(statement) -> first, last order
    functions: dict[str, list[Scope]] = field(default_factory=dict)  # same-file functions and methods
    peft_factories: set[str] = field(default_factory=set)  # same-file functions calling get_peft_model
    signals: list[tuple[str, cst.CSTNode | None]] = field(default_factory=list)
    quote_counts: dict[str, int] = field(default_factory=lambda: {'"': 0, "'": 0})
    is_elif: set[int] = field(default_factory=set)  # ids of `If` nodes that are an `elif`
    # Same-file classes that are plain `nn.Module`s with no `save_pretrained` (wrappers).
    plain_module_classes: set[str] = field(default_factory=set)
    classes: set[str] = field(default_factory=set)  # every class defined in the file
    class_nodes: dict[str, cst.ClassDef] = field(default_factory=dict)  # class name -> its (last) definition
    classes_with_getattr: set[str] = field(default_factory=set)  # classes that define __getattr__
    class_bases: dict[str, list[str]] = field(default_factory=dict)  # class -> last parts of its bases

    # -- queries ---------------------------------------------------------------------------
    @property
    def quote(self) -> str:
        return "'" if self.quote_counts["'"] > self.quote_counts['"'] else '"'

    @property
    def trainer_names(self) -> set[str]:
        return {build.name for build in self.trainer_builds}

    def lora_block_of(self, item: Located) -> tuple[cst.If, Branch, BlockOwner] | None:
        """The innermost LoRA block around `item` in its own scope."""
        for if_node, branch, owner in item.enclosing_branches():
            if lora_branch(if_node.test, self.flag) is branch:
                return if_node, branch, owner
        return None

    def subclasses_of(self, base: str) -> set[str]:
        """Same-file classes deriving (through each other) from a class named `base`."""
        found: set[str] = set()
        changed = True
        while changed:
            changed = False
            for cls, bases in self.class_bases.items():
                if cls not in found and any(b == base or b in found for b in bases):
                    found.add(cls)
                    changed = True
        return found

    def span(self, statement: cst.CSTNode) -> tuple[int, int]:
        return self.spans[id(statement)]

    def read_after(self, scope: Scope, names: set[str], after: int) -> bool:
        """Is any of `names` (or an attribute of it) read in `scope` after order `after`?"""
        for name in names:
            for read, orders in scope.reads.items():
                if (read == name or read.startswith(name + ".")) and any(o > after for o in orders):
                    return True
            if scope.cls is not None and scope.self_name and name.startswith(scope.self_name + "."):
                return True  # another method of the class may read it: be safe
        return False


_CONTAINERS = (cst.Module, cst.IndentedBlock, cst.SimpleStatementSuite)
_STATEMENTS = (cst.BaseStatement, cst.BaseSmallStatement)


def _target_nodes(target: cst.BaseExpression) -> Iterator[cst.BaseExpression]:
    if isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from _target_nodes(element.value)
    elif isinstance(target, cst.StarredElement):
        yield from _target_nodes(target.value)
    else:
        yield target


class _Indexer(cst.CSTVisitor):
    def __init__(self, index: ModuleIndex) -> None:
        self.index = index
        self.stack: list[cst.CSTNode] = []
        self.scope_stack: list[tuple[Scope, int]] = []  # (scope, stack depth where it starts)
        self.class_stack: list[cst.ClassDef] = []
        self.function_stack: list[str] = []
        self.order = 0
        self.class_bases: dict[str, list[str]] = {}
        self.classes_with_save: set[str] = set()
        self.targets: set[int] = set()  # ids of Name/Attribute nodes that are binding targets
        self.starts: dict[int, int] = {}
        self.pending: dict[int, list[tuple]] = {}  # id(statement) -> bindings made when it ends
        self._by_type: dict[type, tuple] = {}

    # -- plumbing ---------------------------------------------------------------------------
    def on_visit(self, node: cst.CSTNode) -> bool:
        self.order += 1
        self.stack.append(node)
        if isinstance(node, _STATEMENTS):
            self.starts[id(node)] = self.order
            if isinstance(node, (cst.BaseSmallStatement, cst.BaseCompoundStatement)):
                self.index.statements.append(node)
        if isinstance(node, (cst.Module, cst.FunctionDef)):
            parent = self.scope_stack[-1][0] if self.scope_stack else None
            scope = Scope(node=node, parent=parent)
            if isinstance(node, cst.FunctionDef) and self.class_stack and self._direct_method(node):
                scope.cls = self.class_stack[-1]
                params = node.params.posonly_params or node.params.params
                decorators = {dotted_name(d.decorator) for d in node.decorators}
                if params and "staticmethod" not in decorators:
                    scope.self_name = params[0].name.value
            self.index.scopes.append(scope)
            self.scope_stack.append((scope, len(self.stack) - 1))
        visit = self._hooks(type(node))[0]
        return visit is None or visit(node) is not False  # libcst's rule: False skips the children

    def _hooks(self, kind: type) -> tuple:
        """(visit_X, leave_X) of a node type, looked up once per type (libcst formats the
        method name and looks it up for every node it passes)."""
        hooks = self._by_type.get(kind)
        if hooks is None:
            name = kind.__name__
            hooks = self._by_type[kind] = (getattr(self, f"visit_{name}", None), getattr(self, f"leave_{name}", None))
        return hooks

    def _direct_method(self, node: cst.FunctionDef) -> bool:
        """Is the def directly in the body of the innermost class (not nested in a method)?"""
        cls = self.class_stack[-1]
        return len(self.stack) >= 3 and self.stack[-3] is cls

    def on_leave(self, original_node: cst.CSTNode) -> None:
        leave = self._hooks(type(original_node))[1]
        if leave is not None:
            leave(original_node)
        key = id(original_node)
        if key in self.starts:
            self.index.spans[key] = (self.starts.pop(key), self.order)
        for args in self.pending.pop(key, ()):
            self._bind_now(*args)
        self.stack.pop()
        if self.scope_stack and self.scope_stack[-1][1] == len(self.stack):
            self.scope_stack.pop()

    @property
    def scope(self) -> Scope:
        return self.scope_stack[-1][0]

    def located(self, node: cst.CSTNode) -> Located:
        scope, depth = self.scope_stack[-1]
        return Located(node=node, order=self.order, scope=scope, ancestors=tuple(self.stack[depth:]))

    def bind(self, target: cst.BaseExpression | str, value: cst.BaseExpression | None, *, kind: str = "other",
             scope: Scope | None = None, now: bool = False) -> None:
        """Record a binding; it takes effect when the current statement ends (unless `now`)."""
        at = self.located(self.stack[-1])
        names: list[tuple[str, int | None]] = []
        if isinstance(target, str):
            names.append((target, None))
        else:
            if isinstance(target, (cst.Tuple, cst.List)):
                elements = [e.value for e in target.elements]
                for i, element in enumerate(elements):
                    for node in _target_nodes(element):
                        self.targets.add(id(node))
                        name = dotted_name(node)
                        if name is not None:
                            names.append((name, i if node is element else None))
            else:
                for node in _target_nodes(target):
                    self.targets.add(id(node))
                    name = dotted_name(node)
                    if name is not None:
                        names.append((name, None))
        for name, position in names:
            args = (name, value if (position is not None or not isinstance(target, (cst.Tuple, cst.List))) else None,
                    at, position, kind, scope or self.scope)
            if now:
                self._bind_now(*args)
            else:
                self.pending.setdefault(id(self.stack[-1]), []).append(args)

    def _bind_now(self, name, value, at, position, kind, scope) -> None:
        binding = Binding(order=self.order, target=name, value=value, at=at, position=position, kind=kind)
        scope.bindings.setdefault(name, []).append(binding)

    # -- names and strings ------------------------------------------------------------------
    def _read(self, name: str) -> None:
        self.scope.reads.setdefault(name, []).append(self.order)

    def visit_Name(self, node: cst.Name) -> None:
        for scope, _ in self.scope_stack:
            scope.identifiers.add(node.value)
        if id(node) not in self.targets:
            self._read(node.value)
        signal = distributed.name_signal(node.value)
        if signal:
            self.index.signals.append((signal, node))

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if id(node) not in self.targets:
            name = dotted_name(node)
            if name is not None:
                self._read(name)
        signal = distributed.name_signal(node.attr.value)
        if signal:
            self.index.signals.append((signal, node))

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        quote = node.value.lstrip("rRbBuUfF")[:1]
        if quote in self.index.quote_counts:
            self.index.quote_counts[quote] += 1
        signal = distributed.string_signal(node)
        if signal:
            self.index.signals.append((signal, node))

    def visit_Subscript(self, node: cst.Subscript) -> None:
        signal = distributed.environ_subscript_signal(node)
        if signal:
            self.index.signals.append((signal, node))

    # -- imports, classes, functions --------------------------------------------------------
    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            name = dotted_name(alias.name) or ""
            if name.startswith("torch.distributed"):
                self.index.signals.append((f"imports {name}", node))
            if alias.asname is not None:
                self.bind(alias.asname.name, None)  # type: ignore[arg-type]
            else:
                self.bind(name.split(".")[0], None)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        module = dotted_name(node.module) if node.module is not None else ""
        if isinstance(node.names, cst.ImportStar):
            return
        for alias in node.names:
            name = dotted_name(alias.name) or ""
            if (module == "torch" and name == "distributed") or (module or "").startswith("torch.distributed"):
                self.index.signals.append((f"imports {module}.{name}", node))
            asname = dotted_name(alias.asname.name) if alias.asname is not None else None  # type: ignore[arg-type]
            if asname and name.endswith("Trainer"):
                self.index.trainer_classes.add(asname)  # `from transformers import Trainer as HFT`
            self.bind(asname or name, None)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        bases = [last_part(dotted_name(b.value) or "") for b in node.bases if b.keyword is None]
        self.class_bases[node.name.value] = bases
        body = node.body.body if isinstance(node.body, cst.IndentedBlock) else ()
        if any(isinstance(s, cst.FunctionDef) and s.name.value == "save_pretrained" for s in body):
            self.classes_with_save.add(node.name.value)
        if any(isinstance(s, cst.FunctionDef) and s.name.value == "__getattr__" for s in body):
            self.index.classes_with_getattr.add(node.name.value)
        self.index.class_nodes[node.name.value] = node
        self.class_stack.append(node)

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.class_stack.pop()
        self.bind(original_node.name.value, None)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.function_stack.append(node.name.value)
        self.index.functions.setdefault(node.name.value, []).append(self.scope)
        params = node.params
        for param in (*params.posonly_params, *params.params, *params.kwonly_params):
            self.bind(param.name.value, None, kind="param", now=True)
        for star in (params.star_arg, params.star_kwarg):
            if isinstance(star, cst.Param):
                self.bind(star.name.value, None, kind="param", now=True)

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.function_stack.pop()
        # The def binds its name in the enclosing scope.
        parent = self.scope_stack[-1][0].parent or self.scope
        parent.bindings.setdefault(original_node.name.value, []).append(
            Binding(order=self.order, target=original_node.name.value, value=None,
                    at=self.located(original_node), kind="other"))

    # -- statements -------------------------------------------------------------------------
    def visit_If(self, node: cst.If) -> None:
        self.index.ifs[id(node)] = (node, self.located(node))
        if len(self.stack) >= 2 and isinstance(self.stack[-2], cst.If) and self.stack[-2].orelse is node:
            self.index.is_elif.add(id(node))

    def visit_Return(self, node: cst.Return) -> None:
        self.scope.returns.append(self.located(node))

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            self.bind(target.target, node.value, kind="assign")
        if len(node.targets) == 1 and isinstance(node.value, cst.Call):
            name = dotted_name(node.targets[0].target)
            if name is not None:
                self.index.call_assignments.append((name, node.value, self.located(node)))

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is None:
            return
        self.bind(node.target, node.value, kind="assign")
        if isinstance(node.value, cst.Call):
            name = dotted_name(node.target)
            if name is not None:
                self.index.call_assignments.append((name, node.value, self.located(node)))

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        name = dotted_name(node.target)
        if name is not None:
            self.bind(name, None)

    def visit_For(self, node: cst.For) -> None:
        self.bind(node.target, None, now=True)

    def visit_WithItem(self, node: cst.WithItem) -> None:
        if node.asname is not None:
            self.bind(node.asname.name, None, now=True)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self.bind(node.target, node.value, kind="assign")

    def visit_ExceptHandler(self, node: cst.ExceptHandler) -> None:
        if node.name is not None:
            self.bind(node.name.name, None, now=True)

    # -- calls ------------------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        callee = callee_name(node) or ""
        method = last_part(callee) if callee else (node.func.attr.value if isinstance(node.func, cst.Attribute) else "")
        at = self.located(node)
        self.index.calls.append(at)
        if method == "save_pretrained" and isinstance(node.func, cst.Attribute):
            self.index.save_calls.append(at)
        if method == "get_peft_model" and self.function_stack:
            self.index.peft_factories.add(self.function_stack[-1])
        for signal in distributed.call_signals(node, callee):
            self.index.signals.append((signal, node))

    def finish(self) -> None:
        # Trainer classes: names ending in Trainer (not ForTrainer), import aliases, same-file subclasses.
        classes = self.index.trainer_classes
        changed = True
        while changed:
            changed = False
            for cls, bases in self.class_bases.items():
                if cls not in classes and any(is_trainer_class_name(b) or b in classes for b in bases):
                    classes.add(cls)
                    changed = True
        # Plain wrappers: every base is nn.Module or another plain wrapper; nobody adds save_pretrained.
        plain: set[str] = set()
        changed = True
        while changed:
            changed = False
            for cls, bases in self.class_bases.items():
                if cls in plain or cls in self.classes_with_save or not bases:
                    continue
                if all(b == "Module" or b in plain for b in bases):
                    plain.add(cls)
                    changed = True
        self.index.plain_module_classes = plain
        self.index.classes = set(self.class_bases)
        self.index.class_bases = self.class_bases
        for name, call, at in self.index.call_assignments:
            if is_trainer_call(call, self.index):
                self.index.trainer_builds.append(TrainerBuild(name=name, call=call, at=at))


def is_trainer_class_name(name: str) -> bool:
    """`Trainer`, `SFTTrainer`, `transformers.Trainer`; not `DatasetForTrainer`."""
    return name.endswith("Trainer") and not name.endswith("ForTrainer")


def is_trainer_call(call: cst.Call, index: ModuleIndex) -> bool:
    callee = last_part(callee_name(call) or "")
    if callee in index.trainer_classes:
        return True
    if callee in index.classes:
        return False  # a same-file class counts only when it subclasses a Trainer
    return is_trainer_class_name(callee)


def build_index(module: cst.Module, flag: re.Pattern[str], source_text: str,
                trainer_classes: frozenset[str] = frozenset()) -> ModuleIndex:
    """`trainer_classes`: configured Trainer class names (`trainer-classes`), counted like the
    `...Trainer` names, their same-file subclasses included."""
    index = ModuleIndex(module=module, flag=flag, source_text=source_text)
    index.trainer_classes.update(trainer_classes)
    indexer = _Indexer(index)
    walk(module, indexer)  # libcst's visit would rebuild the whole tree for nothing
    indexer.finish()
    for match in distributed.TEXT_SIGNAL.finditer(source_text):
        index.signals.append((f"mentions {match.group(0).strip()}", None))
    return index
