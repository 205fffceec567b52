"""One pass over a module that records every fact the rules need.

The visitor keeps its own ancestor stack, so each recorded node carries the chain of nodes
that enclose it (up to its scope). Rules then answer "is this save inside that LoRA block, under
a guard, after that trainer?" with identity checks on that chain, without walking the tree again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator, Union

import libcst as cst

from lora_codemod.analysis import distributed
from lora_codemod.analysis.guards import guarded_branch
from lora_codemod.analysis.lora import Branch, lora_branch
from lora_codemod.analysis.names import callee_name, dotted_name, last_part

ScopeNode = Union[cst.Module, cst.FunctionDef]
# Nodes whose `.body` is a block of statements that an `if` branch owns.
BlockOwner = Union[cst.If, cst.Else]

COLLECTIVE_CALLS = {"barrier", "wait_for_everyone", "get_state_dict", "push_to_hub", "save_model"}


@dataclass
class Scope:
    node: ScopeNode
    parent: Scope | None
    identifiers: set[str] = field(default_factory=set)  # every Name used in the scope's subtree
    bindings: dict[str, list[Binding]] = field(default_factory=dict)

    def bindings_of(self, name: str) -> list[Binding]:
        return self.bindings.get(name, [])


@dataclass
class Binding:
    order: int
    target: str
    value: cst.BaseExpression | None  # None: bound by for/with/import/augmented assignment
    container: cst.CSTNode  # the statement list (Module / IndentedBlock / suite) holding it


@dataclass
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
    save_calls: list[Located] = field(default_factory=list)  # X.save_pretrained(...)
    collective_calls: list[Located] = field(default_factory=list)  # save_model, barrier, ...
    ifs: dict[int, tuple[cst.If, Located]] = field(default_factory=dict)
    peft_factories: set[str] = field(default_factory=set)  # same-file functions calling get_peft_model
    signals: list[tuple[str, cst.CSTNode | None]] = field(default_factory=list)
    quote_counts: dict[str, int] = field(default_factory=lambda: {'"': 0, "'": 0})
    is_elif: set[int] = field(default_factory=set)  # ids of `If` nodes that are an `elif`
    # Same-file classes that are plain `nn.Module`s with no `save_pretrained` (seed-style wrappers).
    plain_module_classes: set[str] = field(default_factory=set)

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

    def guard_of(self, item: Located) -> tuple[cst.If, Branch, BlockOwner] | None:
        """The innermost rank-zero guard around `item` in its own scope."""
        for if_node, branch, owner in item.enclosing_branches():
            if guarded_branch(if_node.test) is branch:
                return if_node, branch, owner
        return None


_CONTAINERS = (cst.Module, cst.IndentedBlock, cst.SimpleStatementSuite)


class _Indexer(cst.CSTVisitor):
    def __init__(self, index: ModuleIndex) -> None:
        self.index = index
        self.stack: list[cst.CSTNode] = []
        self.scope_stack: list[tuple[Scope, int]] = []  # (scope, stack depth where it starts)
        self.function_stack: list[str] = []
        self.order = 0
        self.trainer_classes: set[str] = set()
        self.class_bases: dict[str, list[str]] = {}
        self.classes_with_save: set[str] = set()
        self.call_assignments: list[tuple[str, cst.Call, Located]] = []

    # -- plumbing ---------------------------------------------------------------------------
    def on_visit(self, node: cst.CSTNode) -> bool:
        self.order += 1
        self.stack.append(node)
        if isinstance(node, (cst.Module, cst.FunctionDef)):
            parent = self.scope_stack[-1][0] if self.scope_stack else None
            scope = Scope(node=node, parent=parent)
            self.index.scopes.append(scope)
            self.scope_stack.append((scope, len(self.stack) - 1))
        return super().on_visit(node)

    def on_leave(self, original_node: cst.CSTNode) -> None:
        super().on_leave(original_node)
        self.stack.pop()
        if self.scope_stack and self.scope_stack[-1][1] == len(self.stack):
            self.scope_stack.pop()

    @property
    def scope(self) -> Scope:
        return self.scope_stack[-1][0]

    def located(self, node: cst.CSTNode) -> Located:
        scope, depth = self.scope_stack[-1]
        return Located(node=node, order=self.order, scope=scope, ancestors=tuple(self.stack[depth:]))

    def container(self) -> cst.CSTNode:
        for node in reversed(self.stack):
            if isinstance(node, _CONTAINERS):
                return node
        return self.stack[0]

    def bind(self, target: cst.BaseExpression | str, value: cst.BaseExpression | None, scope: Scope | None = None) -> None:
        name = target if isinstance(target, str) else dotted_name(target)
        if name is None:
            if isinstance(target, (cst.Tuple, cst.List)):
                for element in target.elements:
                    self.bind(element.value, None, scope)
            elif isinstance(target, cst.StarredElement):
                self.bind(target.value, None, scope)
            return
        scope = scope or self.scope
        binding = Binding(order=self.order, target=name, value=value, container=self.container())
        scope.bindings.setdefault(name, []).append(binding)

    # -- names and strings ------------------------------------------------------------------
    def visit_Name(self, node: cst.Name) -> None:
        for scope, _ in self.scope_stack:
            scope.identifiers.add(node.value)
        signal = distributed.name_signal(node.value)
        if signal:
            self.index.signals.append((signal, node))

    def visit_Attribute(self, node: cst.Attribute) -> None:
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

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        module = dotted_name(node.module) if node.module is not None else ""
        if isinstance(node.names, cst.ImportStar):
            return
        for alias in node.names:
            name = dotted_name(alias.name) or ""
            if (module == "torch" and name == "distributed") or (module or "").startswith("torch.distributed"):
                self.index.signals.append((f"imports {module}.{name}", node))
            if alias.asname is not None:
                asname = dotted_name(alias.asname.name)  # type: ignore[arg-type]
                if asname and name.endswith("Trainer"):
                    self.trainer_classes.add(asname)  # `from transformers import Trainer as HFT`
                if asname:
                    self.bind(asname, None)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        bases = [last_part(dotted_name(b.value) or "") for b in node.bases if b.keyword is None]
        self.class_bases[node.name.value] = bases
        body = node.body.body if isinstance(node.body, cst.IndentedBlock) else ()
        if any(isinstance(s, cst.FunctionDef) and s.name.value == "save_pretrained" for s in body):
            self.classes_with_save.add(node.name.value)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.function_stack.append(node.name.value)
        params = node.params
        for param in (*params.posonly_params, *params.params, *params.kwonly_params):
            self.bind(param.name.value, None)
        for star in (params.star_arg, params.star_kwarg):
            if isinstance(star, cst.Param):
                self.bind(star.name.value, None)

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.function_stack.pop()
        # The def binds its name in the enclosing scope.
        self.bind(original_node.name.value, None, scope=self.scope_stack[-1][0].parent or self.scope)

    # -- statements -------------------------------------------------------------------------
    def visit_If(self, node: cst.If) -> None:
        self.index.ifs[id(node)] = (node, self.located(node))
        if len(self.stack) >= 2 and isinstance(self.stack[-2], cst.If) and self.stack[-2].orelse is node:
            self.index.is_elif.add(id(node))

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            self.bind(target.target, node.value)
        if len(node.targets) == 1 and isinstance(node.value, cst.Call):
            name = dotted_name(node.targets[0].target)
            if name is not None:
                self.call_assignments.append((name, node.value, self.located(node)))

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is None:
            return
        self.bind(node.target, node.value)
        if isinstance(node.value, cst.Call):
            name = dotted_name(node.target)
            if name is not None:
                self.call_assignments.append((name, node.value, self.located(node)))

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self.bind(node.target, None)

    def visit_For(self, node: cst.For) -> None:
        self.bind(node.target, None)

    def visit_WithItem(self, node: cst.WithItem) -> None:
        if node.asname is not None:
            self.bind(node.asname.name, None)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self.bind(node.target, node.value)

    def visit_ExceptHandler(self, node: cst.ExceptHandler) -> None:
        if node.name is not None:
            self.bind(node.name.name, None)

    # -- calls ------------------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        callee = callee_name(node) or ""
        method = last_part(callee) if callee else (node.func.attr.value if isinstance(node.func, cst.Attribute) else "")
        if method == "save_pretrained" and isinstance(node.func, cst.Attribute):
            self.index.save_calls.append(self.located(node))
        elif method in COLLECTIVE_CALLS:
            self.index.collective_calls.append(self.located(node))
        if method == "get_peft_model" and self.function_stack:
            self.index.peft_factories.add(self.function_stack[-1])
        for signal in distributed.call_signals(node, callee):
            self.index.signals.append((signal, node))

    def finish(self) -> None:
        # Trainer classes: names ending in Trainer, import aliases, and same-file subclasses.
        classes = set(self.trainer_classes)
        changed = True
        while changed:
            changed = False
            for cls, bases in self.class_bases.items():
                if cls not in classes and any(b.endswith("Trainer") or b in classes for b in bases):
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
        for name, call, at in self.call_assignments:
            callee = last_part(callee_name(call) or "")
            if callee.endswith("Trainer") or callee in classes:
                self.index.trainer_builds.append(TrainerBuild(name=name, call=call, at=at))


def build_index(module: cst.Module, flag: re.Pattern[str], source_text: str) -> ModuleIndex:
    index = ModuleIndex(module=module, flag=flag, source_text=source_text)
    indexer = _Indexer(index)
    module.visit(indexer)
    indexer.finish()
    for match in distributed.TEXT_SIGNAL.finditer(source_text):
        index.signals.append((f"mentions {match.group(0)}", None))
    return index

