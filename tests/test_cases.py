"""Every before/after pair in fixtures/cases: exact output, findings, and the spec's invariants."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lora_codemod.config import Config
from lora_codemod.engine import process_file
from tests.helpers import assert_invariants

CASES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "cases"
CASES = sorted(p for p in CASES_DIR.iterdir() if (p / "input.py").is_file())


def load(case: Path):
    meta = json.loads((case / "case.json").read_text())
    args = dict(meta.get("args", {}))
    for key in ("select", "ignore"):
        if key in args:
            args[key] = frozenset(args[key])
    return meta, Config(**args)


def test_there_are_enough_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Path):
    meta, config = load(case)
    source = (case / "input.py").read_bytes()
    expected_path = case / "expected.py"
    expected = expected_path.read_bytes() if expected_path.exists() else source
    result = assert_invariants(source, config, meta.get("path", "case.py"))
    assert result.output == expected, f"{case.name}: output differs from expected.py"
    got = [(f.code, f.line, f.status.value) for f in result.findings]
    want = [(f["code"], f["line"], f["status"]) for f in meta["findings"]]
    assert sorted(got) == sorted(want), f"{case.name}: {meta['description']}\n" + "\n".join(
        f.format() for f in result.findings)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_on_disk(case: Path, tmp_path):
    """Invariant 4 (a no-op file is not written) and the write path, file by file."""
    meta, config = load(case)
    source = (case / "input.py").read_bytes()
    path = tmp_path / meta.get("path", "input.py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(source)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    outcome = process_file(str(path), config, write=True)
    assert outcome.result.error is None
    if (case / "expected.py").exists():
        assert outcome.written and path.read_bytes() == (case / "expected.py").read_bytes()
    else:
        assert not outcome.written and path.stat().st_mtime_ns == 1_000_000_000
