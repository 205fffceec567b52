"""Finding positions from the stdlib tree agree with libcst's PositionProvider."""

from __future__ import annotations

import re
from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider

from lora_codemod.analysis.index import build_index
from lora_codemod.analysis.positions import find_positions
from lora_codemod.prefilter import parse_ast

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(ROOT.glob("fixtures/cases/*/input.py")) + sorted(ROOT.glob("fixtures/scripts/*.py")) + sorted(
    (ROOT / "lora_codemod").rglob("*.py"))
FLAG = re.compile("lora|peft", re.I)


def _spans(source: bytes):
    """Every call, statement and statement line: where the stdlib places it, and where libcst does."""
    module = cst.parse_module(source)
    text = source.decode(module.encoding)
    index = build_index(module, FLAG, text)
    lines = [line.encode("utf-8") for line in re.split(r"\r\n|\r|\n", text.lstrip("\ufeff"))]
    calls = [c.node for c in index.calls]
    wanted = calls + list(index.statements) + _simple_lines(module)
    found = find_positions(parse_ast(source), lines, index.statements, calls, wanted)
    truth = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    return wanted, found, truth


def _simple_lines(module):
    out = []

    class Collect(cst.CSTVisitor):
        def visit_SimpleStatementLine(self, node):
            out.append(node)

    module.visit(Collect())
    return out


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_call_and_statement_is_where_libcst_says(path):
    wanted, found, truth = _spans(path.read_bytes())
    assert found is not None
    for node in wanted:
        span = truth[node]
        assert found[id(node)] == (span.start.line, span.start.column, span.end.line, span.end.column), (
            type(node).__name__, cst.Module(body=[]).code_for_node(node)[:60])


def test_non_ascii_columns_tabs_crlf_and_a_bom():
    source = "\ufeff# -*- coding: utf-8 -*-\r\nname = 'é'; model.save_pretrained(d)\r\nif x:\r\n\tf(g(), 'ü', h())\r\n"
    wanted, found, truth = _spans(source.encode("utf-8"))
    for node in wanted:
        span = truth[node]
        assert found[id(node)] == (span.start.line, span.start.column, span.end.line, span.end.column)


def test_a_node_that_is_neither_a_call_nor_a_statement_asks_libcst():
    source = b"if a:\n    pass\nelse:\n    f()\n"
    module = cst.parse_module(source)
    index = build_index(module, FLAG, source.decode())
    else_node = module.body[0].orelse
    assert find_positions(parse_ast(source), source.split(b"\n"), index.statements,
                          [c.node for c in index.calls], [else_node]) is None
