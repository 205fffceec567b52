"""Unsafe fixes (ruff's convention): applied only with --unsafe-fixes / `unsafe-fixes = true`;
otherwise the finding needs review, names the chains, says how to apply it, and edits nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lora_codemod.cli import cli

CASES = Path(__file__).resolve().parent.parent / "fixtures" / "cases"
SOURCE = (CASES / "136_plain_wrapper_three_way_setup_snippet_review" / "input.py").read_bytes()
SAVE_LINE = 52  # model_to_save.save_pretrained(lora_output_dir)


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "train.py").write_bytes(SOURCE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _lc001(output: str) -> dict:
    data = json.loads(output)
    (finding,) = [f for f in data["files"][0]["findings"] if f["rule"] == "LC001"]
    return finding


def test_without_the_flag_it_needs_review_and_nothing_of_it_is_written(project):
    result = invoke("fix", "train.py")
    assert result.exit_code == 1  # a needs-review finding
    text = (project / "train.py").read_text()
    assert "model_to_save.save_pretrained(lora_output_dir)" in text and "text_model.save_pretrained" not in text
    assert "trainer.save_model()\n    if trainer.is_world_process_zero():" in text  # LC003's safe fix applied
    line = next(l for l in result.output.splitlines() if " LC001 " in l)
    assert line.startswith(f"train.py:{SAVE_LINE}:13: LC001 ")
    assert "`model_to_save.model.text_model` or `model_to_save.model`" in line
    assert "[needs review:" in line and "--unsafe-fixes saves from there" in line


def test_with_the_flag_the_diff_shows_it_and_fix_writes_it(project):
    diff = invoke("fix", "--diff", "--unsafe-fixes", "train.py")
    assert diff.exit_code == 1
    assert "+                model_to_save.model.text_model.save_pretrained(lora_output_dir)" in diff.output
    assert "[would fix (unsafe fix)]" in diff.output
    assert (project / "train.py").read_bytes() == SOURCE  # --diff writes nothing
    fixed = invoke("fix", "--unsafe-fixes", "train.py")
    assert fixed.exit_code == 0 and "[fixed (unsafe fix)]" in fixed.output
    expected = (CASES / "137_plain_wrapper_three_way_setup_snippet_unsafe" / "expected.py").read_bytes()
    assert (project / "train.py").read_bytes() == expected
    again = invoke("fix", "--check", "--unsafe-fixes", "train.py")  # CI-green on its own output
    assert again.exit_code == 0, again.output


def test_json_and_sarif_mark_the_fix_unsafe(project):
    held = _lc001(invoke("fix", "--check", "--output-format", "json", "train.py").stdout)
    assert (held["status"], held["fixed"], held["fix_applicability"], held["fix"]) == (
        "needs review", False, "unsafe", None)
    applied = _lc001(invoke("fix", "--check", "--unsafe-fixes", "--output-format", "json", "train.py").stdout)
    assert (applied["status"], applied["fixed"], applied["fix_applicability"]) == ("fixed", True, "unsafe")
    assert any("text_model.save_pretrained" in edit["replacement"] for edit in applied["fix"])
    data = json.loads(invoke("fix", "--check", "--unsafe-fixes", "--output-format", "json", "train.py").stdout)
    safe = [f for f in data["files"][0]["findings"] if f["rule"] == "LC003"]
    assert [f["fix_applicability"] for f in safe] == ["safe"]
    sarif = json.loads(invoke("fix", "--check", "--unsafe-fixes", "--output-format", "sarif", "train.py").stdout)
    results = sarif["runs"][0]["results"]
    (lc001,) = [r for r in results if r["ruleId"] == "LC001"]
    assert lc001["properties"]["fixApplicability"] == "unsafe" and "fixes" in lc001
    (lc003,) = [r for r in results if r["ruleId"] == "LC003"]
    assert "fixApplicability" not in lc003["properties"]


def test_the_configuration_enables_it_and_the_command_line_overrides(project):
    (project / "pyproject.toml").write_text("[tool.lora-codemod]\nunsafe-fixes = true\n")
    assert invoke("fix", "--check", "train.py").exit_code == 1  # would fix: exit 1 under --check
    assert "[would fix (unsafe fix)]" in invoke("fix", "--check", "train.py").output
    assert "[needs review:" in next(l for l in invoke("fix", "--check", "--no-unsafe-fixes", "train.py").output
                                    .splitlines() if " LC001 " in l)
    config = invoke("config", "train.py").output
    assert "unsafe-fixes    = true  # pyproject.toml" in config


def test_a_bad_value_is_one_line_and_exit_2(project):
    (project / "pyproject.toml").write_text('[tool.lora-codemod]\nunsafe-fixes = "yes"\n')
    result = invoke("fix", "--check", "train.py")
    assert result.exit_code == 2
    assert result.output.strip() == "pyproject.toml: error: unsafe-fixes: expected true or false, got 'yes'"


def test_a_suppressed_unsafe_finding_is_neither_applied_nor_counted(project):
    source = SOURCE.replace(b"model_to_save.save_pretrained(lora_output_dir)",
                            b"model_to_save.save_pretrained(lora_output_dir)  # noqa: LC001")
    (project / "train.py").write_bytes(source)
    result = invoke("fix", "--unsafe-fixes", "train.py")
    assert result.exit_code == 0
    assert b"text_model.save_pretrained" not in (project / "train.py").read_bytes()
