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

from lora_codemod.analysis.wrappers import RECEIVER  # what a branch test says for the save's receiver

BlockOwner = Union[cst.If, cst.Else]


@dataclass
class Plan:
    renames: dict[int, str] = field(default_factory=dict)  # id(name node) -> new name
    inserts: dict[int, cst.BaseStatement] = field(default_factory=dict)  # id(owner) -> first statement
    guard_inside: dict[int, str] = field(default_factory=dict)  # id(owner) -> guard test source
    guard_around: dict[int, str] = field(default_factory=dict)  # id(if) -> guard test source
    move_before: set[int] = field(default_factory=set)  # id(guard if): move its first statement out
    insert_before: dict[int, cst.BaseStatement] = field(default_factory=dict)  # id(statement) -> new one before it
    runs: dict[int, tuple[list[int], str]] = field(default_factory=dict)  # id(first statement) -> (ids of run, test)
    removals: set[int] = field(default_factory=set)  # ids of statements to drop (their comments stay)
    extensions: dict[int, str] = field(default_factory=dict)  # id(receiver) -> attribute chain appended (".model")
    # id(save statement) -> the `if`/`elif`/`else` it becomes: per branch the test (with RECEIVER
    # standing for the save's receiver; None for `else`) and the chain that branch saves from.
    branches: dict[int, tuple[tuple[str | None, tuple[str, ...]], ...]] = field(default_factory=dict)
    # Keys are ids of nodes of the original tree, which stays alive (and so do its ids) while
    # the plan is applied to it.

    def __bool__(self) -> bool:
        return bool(self.renames or self.inserts or self.guard_inside or self.guard_around or self.move_before
                    or self.insert_before or self.runs or self.removals or self.extensions or self.branches)

    def rename(self, node: cst.BaseExpression, new_name: str) -> None:
        """Replace a name, a dotted name or a whole expression by the name `new_name`."""
        self.renames[id(node)] = new_name

    def extend(self, receiver: cst.BaseExpression, chain: tuple[str, ...]) -> None:
        """Save from an attribute chain of the receiver: `m.save_pretrained` -> `m.model.save_pretrained`."""
        self.extensions[id(receiver)] = "".join("." + part for part in chain)

    def branch_save(self, statement: cst.SimpleStatementLine, branches) -> None:
        """Turn a save statement (`R.save_pretrained(...)` alone on its line) into an
        `if`/`elif`/`else` whose branches save from `R` + chain under the given tests."""
        self.branches[id(statement)] = tuple(branches)

    def insert_statement_before(self, statement: cst.CSTNode, new: cst.BaseStatement) -> None:
        self.insert_before.setdefault(id(statement), new)

    def wrap_run(self, statements: list[cst.CSTNode], test: str) -> None:
        """Guard consecutive statements of one block with `if <test>:`."""
        self.runs[id(statements[0])] = ([id(s) for s in statements], test)

    def remove(self, statement: cst.CSTNode) -> None:
        """Drop a statement; the comments and blank lines above it stay, above the next one."""
        self.removals.add(id(statement))

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


def _join_lines(carried: list, lines) -> list:
    """The lines above a removed statement joined to the lines above the next one: comments are
    kept; blank lines alone are dropped when the next statement has its own."""
    lines = list(lines)
    if not carried:
        return lines
    if all(line.comment is None for line in carried) and lines and lines[0].comment is None:
        return lines
    return [*carried, *lines]


def _above(new: cst.BaseStatement, following: list) -> cst.BaseStatement:
    """A statement inserted before `following[0]` takes the blank lines above it (comments stay
    directly above the statement they describe)."""
    if not following:
        return new
    lines = list(following[0].leading_lines)
    blank = []
    for line in lines:
        if line.comment is not None:
            break
        blank.append(line)
    if blank:
        following[0] = following[0].with_changes(leading_lines=lines[len(blank):])
        return new.with_changes(leading_lines=blank)
    return new


def _guard(test: str, statements: list[cst.BaseStatement], indent: str, leading_lines=()) -> cst.If:
    shift = _ShiftBackslashContinuations(indent)
    return cst.If(
        test=cst.parse_expression(test),
        body=cst.IndentedBlock(body=[s.visit(shift) for s in statements]),
        leading_lines=leading_lines,
    )


def _with_chain(expr: cst.BaseExpression, suffix: str) -> cst.BaseExpression:
    for part in suffix.strip(".").split("."):
        expr = cst.Attribute(value=expr, attr=cst.Name(part))
    return expr


def _branched(statement: cst.SimpleStatementLine, branches) -> cst.If:
    """`R.save_pretrained(d)  # c` -> `if t1: R.a.save_pretrained(d)  # c` / `elif t2: ...` / `else: ...`."""
    expr = statement.body[0]
    assert isinstance(expr, cst.Expr) and isinstance(expr.value, cst.Call)
    call = expr.value
    assert isinstance(call.func, cst.Attribute)
    receiver = call.func.value
    shown = cst.Module(body=[]).code_for_node(receiver)

    def saving(chain: tuple[str, ...]) -> cst.IndentedBlock:
        func = call.func.with_changes(value=_with_chain(receiver, "." + ".".join(chain)) if chain else receiver)
        line = statement.with_changes(body=[expr.with_changes(value=call.with_changes(func=func))], leading_lines=())
        return cst.IndentedBlock(body=[line])

    orelse: cst.If | cst.Else | None = None
    for test, chain in reversed(branches):
        if test is None:
            orelse = cst.Else(body=saving(chain))
        else:
            orelse = cst.If(test=cst.parse_expression(test.replace(RECEIVER, shown)), body=saving(chain), orelse=orelse)
    assert isinstance(orelse, cst.If)
    return orelse.with_changes(leading_lines=statement.leading_lines)


class PlanApplier(cst.CSTTransformer):
    def __init__(self, plan: Plan, indent: str) -> None:
        super().__init__()
        self.plan = plan
        self.indent = indent  # the module's indentation unit, for what a guard re-indents
        self.updated: dict[int, object] = {}  # id(original statement) -> what it became
        self.leftover: list = []  # lines above removed statements that no later statement took

    # -- names ------------------------------------------------------------------------------
    def _renamed(self, original: cst.BaseExpression, updated: cst.BaseExpression) -> cst.BaseExpression:
        new = self.plan.renames.get(id(original))
        if new is not None:
            updated = cst.Name(new, lpar=updated.lpar, rpar=updated.rpar)
        suffix = self.plan.extensions.get(id(original))
        if suffix is not None:
            updated = _with_chain(updated, suffix)
        return updated

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        return self._renamed(original_node, updated_node)

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.BaseExpression:
        return self._renamed(original_node, updated_node)

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        return self._renamed(original_node, updated_node)

    # -- statements of a block: insert before, guard runs ------------------------------------
    def on_leave(self, original_node, updated_node):
        result = super().on_leave(original_node, updated_node)
        branches = self.plan.branches.get(id(original_node))
        if branches is not None:
            result = _branched(result, branches)
        if isinstance(original_node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            self.updated[id(original_node)] = result
        return result

    def _edit_statements(self, original: list, updated: list) -> list:
        if not (self.plan.insert_before or self.plan.runs or self.plan.removals):
            return updated
        if not any(id(s) in self.plan.insert_before or id(s) in self.plan.runs or id(s) in self.plan.removals
                   for s in original):
            return updated
        out: list = []
        carried: list = []  # leading lines of removed statements, for the next one
        i = 0
        while i < len(original):
            statement = original[i]
            key = id(statement)
            if key in self.plan.removals:
                carried += [line for flat in self._flat(statement) for line in flat.leading_lines]
                i += 1
                continue
            if carried:
                first = self._flat(statement)
                if first:
                    self.updated[key] = [first[0].with_changes(leading_lines=_join_lines(carried, first[0].leading_lines)),
                                         *first[1:]]
                carried = []
            before = self.plan.insert_before.get(key)
            run = self.plan.runs.get(key)
            if run is None:
                flat = self._flat(statement)
                if before is not None:
                    out.append(_above(before, flat))
                out += flat
                i += 1
                continue
            ids, test = run
            members = original[i:i + len(ids)]
            assert [id(m) for m in members] == ids, "a guarded run must be consecutive statements of one block"
            inner = [u for m in members for u in self._flat(m)]
            if before is not None:
                out.append(_above(before, inner))
            leading = inner[0].leading_lines
            inner[0] = inner[0].with_changes(leading_lines=())
            out.append(_guard(test, inner, self.indent, leading_lines=leading))
            i += len(ids)
        self.leftover = carried
        return out

    def _flat(self, statement) -> list:
        result = self.updated.get(id(statement), statement)
        if isinstance(result, list):
            return list(result)
        if isinstance(result, cst.FlattenSentinel):
            return list(result.nodes)
        if isinstance(result, cst.RemovalSentinel):
            return []
        return [result]

    def leave_IndentedBlock(self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock):
        self.leftover = []
        body = self._edit_statements(list(original_node.body), list(updated_node.body))
        footer = _join_lines(self.leftover, updated_node.footer)  # comments above a removed last statement
        return updated_node.with_changes(body=body, footer=footer)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module):
        self.leftover = []
        body = self._edit_statements(list(original_node.body), list(updated_node.body))
        return updated_node.with_changes(body=body, footer=_join_lines(self.leftover, updated_node.footer))

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
