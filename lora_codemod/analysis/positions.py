"""Line and column of the few nodes that carry a finding, without generating the whole module.

libcst's PositionProvider generates the code of every node to know where one is: on a 460 KB
module that is most of the time spent on a file with three findings. The stdlib `ast` already
knows the positions of statements and calls, so the nodes are paired instead:

- libcst's small and compound statements, in visit order, are the `ast` statements in source
  order (an `a; b` line is two of each, an `elif` an `If` in both, decorators and `else:` none);
- libcst's calls, in visit order, are the `ast` calls in source order (an outer call before the
  calls it starts with: `a().b()`), pre-order in both.

A `SimpleStatementLine` spans its first to its last small statement. Anything else, or trees
that do not pair up one to one, gets None: the caller then asks libcst for every position, as
before. tests/analysis/test_positions.py holds the pairing to PositionProvider's answers.
"""

from __future__ import annotations

import ast
from typing import Iterable

import libcst as cst

Span = tuple[int, int, int, int]  # start line, start column (0-based), end line, end column (exclusive)


def _ast_spans(tree: ast.AST, kind: type) -> list[tuple]:
    nodes = [n for n in ast.walk(tree) if isinstance(n, kind)]
    nodes.sort(key=lambda n: (n.lineno, n.col_offset, -(n.end_lineno or 0), -(n.end_col_offset or 0)))
    return [(n.lineno, n.col_offset, n.end_lineno, n.end_col_offset) for n in nodes]


def find_positions(tree: ast.AST | None, lines: list[bytes], statements: list[cst.CSTNode],
                   calls: list[cst.CSTNode], wanted: Iterable[cst.CSTNode]) -> dict[int, Span] | None:
    """id(node) -> span for every wanted node; None when one of them cannot be placed this way.
    `lines`: the source's lines as bytes (ast columns are UTF-8 byte offsets); `statements` and
    `calls`: libcst's, in visit order."""
    if tree is None:
        return None
    wanted = list(wanted)
    statement_spans = call_spans = None
    statement_at = {id(n): i for i, n in enumerate(statements)}
    call_at = {id(n): i for i, n in enumerate(calls)}
    out: dict[int, Span] = {}
    for node in wanted:
        if isinstance(node, cst.SimpleStatementLine) and node.body:
            first, last = node.body[0], node.body[-1]
        else:
            first = last = node
        if id(first) in call_at and id(last) in call_at:
            if call_spans is None:
                call_spans = _ast_spans(tree, ast.Call)
                if len(call_spans) != len(calls):
                    return None
            start, end = call_spans[call_at[id(first)]], call_spans[call_at[id(last)]]
        elif id(first) in statement_at and id(last) in statement_at:
            if statement_spans is None:
                statement_spans = _ast_spans(tree, ast.stmt)
                if len(statement_spans) != len(statements):
                    return None
            start, end = statement_spans[statement_at[id(first)]], statement_spans[statement_at[id(last)]]
        else:
            return None
        out[id(node)] = (start[0], _chars(lines, start[0], start[1]), end[2], _chars(lines, end[2], end[3]))
    return out


def _chars(lines: list[bytes], line: int, byte_col: int) -> int:
    """A UTF-8 byte offset in a line as a character offset (what libcst counts)."""
    text = lines[line - 1] if 0 < line <= len(lines) else b""
    prefix = text[:byte_col]
    return len(prefix.decode("utf-8", "replace")) if not prefix.isascii() else byte_col
