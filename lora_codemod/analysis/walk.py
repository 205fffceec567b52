"""A read-only walk over a libcst tree, for visitors that only look.

`node.visit(visitor)` rebuilds every node it passes (libcst's visitors share the transformers'
code path): on a 7,000-line module that is 170,000 node constructions, each validated, for a
visitor that changes nothing. `walk` calls the same `on_visit`/`on_leave` hooks on the same nodes
in the same order, and builds nothing. The order of a node type's children is libcst's own,
learnt once per type from its `_visit_and_replace_children` (with a visitor that does not
descend), so the two can never disagree on what comes first.
"""

from __future__ import annotations

import libcst as cst

_ORDER: dict[type, tuple[str, ...]] = {}


class _FieldOrder(cst.CSTVisitor):
    """Records the fields libcst visits on one node, without going below it."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[str] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        return False

    def on_leave(self, original_node: cst.CSTNode) -> None:
        pass

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        self.fields.append(attribute)

    def on_leave_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        pass


# The node types whose `_visit_and_replace_children` skips a field depending on its value
# (`from m import *` does not visit its ImportStar; an f-string part without a format spec does
# not visit it): their order is learnt per (type, field is absent).
_CONDITIONAL = {name: field for name, field in (
    ("ImportFrom", "names"), ("LazyImportFrom", "names"),
    ("FormattedStringExpression", "format_spec"), ("TemplatedStringExpression", "format_spec"))}


def _key(node: cst.CSTNode) -> object:
    field = _CONDITIONAL.get(type(node).__name__)
    if field is None:
        return type(node)
    value = getattr(node, field)
    return type(node), value is None or isinstance(value, cst.ImportStar)


def _fields(node: cst.CSTNode) -> tuple[str, ...]:
    key = _key(node)
    order = _ORDER.get(key)
    if order is None:
        recorder = _FieldOrder()
        node._visit_and_replace_children(recorder)  # children are visited, not descended into
        order = _ORDER[key] = tuple(dict.fromkeys(recorder.fields))
    return order


def walk(node: cst.CSTNode, visitor: cst.CSTVisitor) -> None:
    """`node.visit(visitor)` for a visitor that only reads: same hooks, same order, no rebuild."""
    if visitor.on_visit(node):
        for name in _fields(node):
            child = getattr(node, name)
            if isinstance(child, cst.CSTNode):
                walk(child, visitor)
            elif isinstance(child, (list, tuple)):
                for item in child:
                    if isinstance(item, cst.CSTNode):
                        walk(item, visitor)
    visitor.on_leave(node)
