"""The read-only walk meets the same nodes, in the same order, as libcst's own visit."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest

from lora_codemod.analysis.walk import walk

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(ROOT.glob("fixtures/cases/*/input.py")) + sorted(ROOT.glob("fixtures/scripts/*.py")) + sorted(
    (ROOT / "lora_codemod").rglob("*.py"))


class Trace(cst.CSTVisitor):
    def __init__(self, skip: type | None = None) -> None:
        super().__init__()
        self.events: list[tuple[str, int]] = []
        self.skip = skip

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.events.append(("visit", id(node)))
        return not (self.skip is not None and isinstance(node, self.skip))

    def on_leave(self, original_node: cst.CSTNode) -> None:
        self.events.append(("leave", id(original_node)))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_walk_meets_what_visit_meets(path):
    module = cst.parse_module(path.read_bytes())
    for skip in (None, cst.FunctionDef):  # and a visitor that does not descend into functions
        by_visit, by_walk = Trace(skip), Trace(skip)
        module.visit(by_visit)
        walk(module, by_walk)
        assert by_walk.events == by_visit.events


def test_walk_builds_nothing():
    module = cst.parse_module("x = f(a, b=[1, 2])\n")
    seen = []

    class Collect(cst.CSTVisitor):
        def on_visit(self, node):
            seen.append(node)
            return True

    walk(module, Collect())
    names = [n for n in seen if isinstance(n, cst.Name)]
    assert [n.value for n in names] == ["x", "f", "a", "b"]
    assert names[0] is module.body[0].body[0].targets[0].target  # the tree's own nodes, not copies


def test_fields_libcst_visits_only_sometimes():
    source = 'from a import *\nfrom b import c\nx = f"{a}{b:>{w}}"\ny = f"{c}"\n'
    module = cst.parse_module(source)
    by_visit, by_walk = Trace(), Trace()
    module.visit(by_visit)
    walk(module, by_walk)
    assert by_walk.events == by_visit.events
