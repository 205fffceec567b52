"""Edits the rules ask for, keyed by original node, and the one transformer that applies them.

Rules never build trees themselves: they say "rename this name node", "insert this statement
first in that block", "wrap that block in a guard", "move that statement before its guard".
Applying every edit in one pass keeps the rules composable (LC001's insertion lands inside the
guard that LC002 adds) and leaves every other node, with its whitespace and comments, untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Union

import libcst as cst

BlockOwner = Union[cst.If, cst.Else]


@dataclass
class Plan:
    renames: dict[int, str] = field(default_factory=dict)  # id(name node) -> new name
    inserts: dict[int, cst.BaseStatement] = field(default_factory=dict)  # id(owner) -> first statement
    guard_inside: dict[int, str] = field(default_factory=dict)  # id(owner) -> guard test source
    guard_around: dict[int, str] = field(default_factory=dict)  # id(if) -> guard test source
    move_before: set[int] = field(default_factory=set)  # id(guard if): move its first statement out
    # Keys are ids of nodes of the original tree, which stays alive (and so do its ids) while
    # the plan is applied to it.

    def __bool__(self) -> bool:
        return bool(self.renames or self.inserts or self.guard_inside or self.guard_around or self.move_before)

    def rename(self, node: cst.BaseExpression, new_name: str) -> None:
        self.renames[id(node)] = new_name

    def insert_first(self, owner: BlockOwner, statement: cst.BaseStatement) -> None:
        self.inserts.setdefault(id(owner), statement)

    def wrap_block_body(self, owner: BlockOwner, test: str) -> None:
        self.guard_inside[id(owner)] = test

    def wrap_if(self, if_node: cst.If, test: str) -> None:
        self.guard_around[id(if_node)] = test

    def move_first_statement_before(self, guard: cst.If) -> None:
        self.move_before.add(id(guard))


def _as_indented(body: cst.BaseSuite) -> cst.IndentedBlock:
    """`if x: a; b` -> an indented block, so statements can be added in front."""
    if isinstance(body, cst.IndentedBlock):
        return body
    assert isinstance(body, cst.SimpleStatementSuite)
    line = cst.SimpleStatementLine(body=body.body, trailing_whitespace=body.trailing_whitespace)
    return cst.IndentedBlock(body=[line])


class _ShiftBackslashContinuations(cst.CSTTransformer):
    """libcst re-indents a wrapped block, bracketed continuation lines included, but a line
    continued with a backslash is stored with its absolute indentation: shift it by hand."""

    def __init__(self, indent: str) -> None:
        super().__init__()
        self.indent = indent

    def leave_SimpleWhitespace(self, original_node, updated_node):
        if "\\" not in updated_node.value:
            return updated_node
        return updated_node.with_changes(value=_CONTINUATION.sub(lambda m: m.group(0) + self.indent, updated_node.value))


_CONTINUATION = re.compile(r"\\\r?\n")


def _guard(test: str, statements: list[cst.BaseStatement], indent: str, leading_lines=()) -> cst.If:
    shift = _ShiftBackslashContinuations(indent)
    return cst.If(
        test=cst.parse_expression(test),
        body=cst.IndentedBlock(body=[s.visit(shift) for s in statements]),
        leading_lines=leading_lines,
    )


class PlanApplier(cst.CSTTransformer):
    def __init__(self, plan: Plan, indent: str) -> None:
        super().__init__()
        self.plan = plan
        self.indent = indent  # the module's indentation unit, for what a guard re-indents

    # -- names ------------------------------------------------------------------------------
    def _renamed(self, original: cst.BaseExpression, updated: cst.BaseExpression) -> cst.BaseExpression:
        new = self.plan.renames.get(id(original))
        if new is None:
            return updated
        return cst.Name(new, lpar=updated.lpar, rpar=updated.rpar)

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        return self._renamed(original_node, updated_node)

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.BaseExpression:
        return self._renamed(original_node, updated_node)

    # -- blocks -----------------------------------------------------------------------------
    def _edit_block(self, original: BlockOwner, updated: BlockOwner) -> BlockOwner:
        key = id(original)
        insert, guard = self.plan.inserts.get(key), self.plan.guard_inside.get(key)
        if insert is None and guard is None:
            return updated
        body = _as_indented(updated.body)
        statements = list(body.body)
        if insert is not None:
            statements.insert(0, insert)
        if guard is not None:
            statements = [_guard(guard, statements, self.indent)]
        return updated.with_changes(body=body.with_changes(body=statements))

    def leave_Else(self, original_node: cst.Else, updated_node: cst.Else) -> cst.Else:
        return self._edit_block(original_node, updated_node)

    def leave_If(self, original_node: cst.If, updated_node: cst.If):
        key = id(original_node)
        moved: cst.BaseStatement | None = None
        if key in self.plan.move_before:
            body = updated_node.body
            assert isinstance(body, cst.IndentedBlock)
            moved, rest = body.body[0], list(body.body[1:])
            updated_node = updated_node.with_changes(body=body.with_changes(body=rest))
        updated_node = self._edit_block(original_node, updated_node)
        guard = self.plan.guard_around.get(key)
        if guard is not None:
            # Comments and blank lines above the `if` stay above the new guard.
            inner = updated_node.with_changes(leading_lines=())
            updated_node = _guard(guard, [inner], self.indent, leading_lines=updated_node.leading_lines)
        if moved is not None:
            assert isinstance(moved, (cst.SimpleStatementLine, cst.BaseCompoundStatement))
            moved = moved.with_changes(leading_lines=(*updated_node.leading_lines, *moved.leading_lines))
            return cst.FlattenSentinel([moved, updated_node.with_changes(leading_lines=())])
        return updated_node
