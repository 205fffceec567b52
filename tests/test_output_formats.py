"""`fix --output-format json|sarif|github`: the JSON schema, SARIF 2.1.0 validity, annotations."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from lora_codemod import __version__
from lora_codemod.cli import cli
from lora_codemod.findings import Finding, Status
from lora_codemod.report.formats import (
    escape_data,
    escape_property,
    github_limit_note,
    github_line,
    hunks,
)
from lora_codemod.rules import ALL_RULES
from tests.helpers import DDP_SCRIPT

DDP = DDP_SCRIPT
REVIEW = b"""\
def save(m, d):
    trainer = Trainer(model=model, args=training_args)
    if args.use_lora:
        m.save_pretrained(d)
"""
ZERO3_SCRIPT = b"""\
training_args = TrainingArguments(output_dir="out", deepspeed="ds_config.json")
trainer = Trainer(model=model, args=training_args)
trainer.train()
trainer.save_model()
"""
ZERO3_CONFIG = b'{\n  "zero_optimization": {"stage": 3}\n}\n'

# The official schema, kept beside the project (not in it): ../shared/schemas from the repository.
SARIF_SCHEMA = Path(os.environ.get("LORA_CODEMOD_SARIF_SCHEMA")
                    or Path(__file__).resolve().parents[2] / "shared" / "schemas" / "sarif-schema-2.1.0.json")


@pytest.fixture
def tree(tmp_path, monkeypatch):
    (tmp_path / "train_ddp.py").write_bytes(DDP)
    (tmp_path / "review.py").write_bytes(REVIEW)
    (tmp_path / "clean.py").write_bytes(b"print('hi')\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def run_json(*args) -> tuple[int, dict]:
    result = invoke("fix", "--output-format", "json", "-j", "1", *args)
    return result.exit_code, json.loads(result.stdout)


# ---- JSON -------------------------------------------------------------------------------------

def test_json_document_schema(tree):
    code, doc = run_json("--check", ".")
    assert code == 1
    assert set(doc) == {"schema_version", "tool", "mode", "files", "summary"}
    assert doc["schema_version"] == 1 and doc["tool"] == {"name": "lora-codemod", "version": __version__}
    assert doc["mode"] == "check"
    by_path = {f["path"]: f for f in doc["files"]}
    assert set(by_path) == {"review.py", "train_ddp.py"}  # clean files only in the summary
    ddp = by_path["train_ddp.py"]
    assert set(ddp) == {"path", "changed", "written", "skipped", "error", "findings"}
    assert ddp["changed"] is True and ddp["written"] is False and ddp["error"] is None
    finding = ddp["findings"][0]
    assert set(finding) == {"rule", "path", "line", "column", "end_line", "end_column", "message", "status",
                            "fixed", "reason", "suppressed", "cell", "fix", "fix_applicability"}
    assert (finding["rule"], finding["line"], finding["column"]) == ("LC002", 7, 1)
    assert finding["end_line"] == 8 and finding["end_column"] > 1
    assert finding["status"] == "fixed" and finding["fixed"] is True and finding["reason"] == ""
    assert finding["cell"] is None  # a notebook's cell number, 1-based
    assert finding["fix_applicability"] == "safe"
    review = by_path["review.py"]["findings"][0]
    assert review["status"] == "needs review" and review["fixed"] is False and review["reason"] and review["fix"] is None
    assert review["fix_applicability"] is None  # no fix at all (an unsafe one held back would say "unsafe")
    summary = doc["summary"]
    assert summary["files"] == 3 and summary["changed"] == 1 and summary["needs_review"] == 1
    assert summary["fixed"] == 2 and summary["rules"]["LC001"]["fixed"] == 1


def test_json_fixes_rebuild_the_output(tree):
    """The replacement text of every fixed finding, applied, is exactly what `fix` writes."""
    _, doc = run_json("--check", "train_ddp.py")
    edits = [e for f in doc["files"][0]["findings"] if f["fix"] for e in f["fix"]]
    lines = DDP.decode().splitlines(keepends=True)
    for edit in sorted(edits, key=lambda e: e["start_line"], reverse=True):
        lines[edit["start_line"] - 1:edit["end_line"]] = [edit["replacement"]]
    invoke("fix", "train_ddp.py")
    assert "".join(lines) == (tree / "train_ddp.py").read_text()


def test_json_fix_mode_and_diff(tree):
    code, doc = run_json("--diff", "train_ddp.py")
    assert code == 1 and doc["mode"] == "diff" and doc["files"][0]["diff"].startswith("--- a/train_ddp.py")
    code, doc = run_json("train_ddp.py")
    assert code == 0 and doc["mode"] == "fix" and doc["files"][0]["written"] is True


def test_json_errors_and_other_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.py").write_bytes(b"def f(:\n    save_pretrained\n")
    (tmp_path / "ds_config.json").write_bytes(ZERO3_CONFIG)
    (tmp_path / "train.py").write_bytes(ZERO3_SCRIPT)
    code, doc = run_json("--check", ".")
    assert code == 2
    by_path = {f["path"]: f for f in doc["files"]}
    assert by_path["bad.py"]["error"]["line"] == 1 and "cannot parse" in by_path["bad.py"]["error"]["message"]
    paths = {f["path"] for f in by_path["train.py"]["findings"]}
    assert paths == {"train.py", "ds_config.json"}  # LC007 points into the DeepSpeed config


def test_stdout_is_only_the_document(tree):
    result = invoke("fix", "--check", "--output-format", "json", ".")
    json.loads(result.stdout)  # the summary line went to stderr
    assert "would fix" in result.stderr


def test_machine_format_with_stdin_fix_is_a_usage_error(tree):
    result = invoke("fix", "--output-format", "json", "-", input=DDP)
    assert result.exit_code == 2 and "needs --check or --diff" in result.stderr
    result = invoke("fix", "--check", "--output-format", "json", "-", "--stdin-filename", "t.py", input=DDP)
    assert result.exit_code == 1 and json.loads(result.stdout)["files"][0]["path"] == "t.py"


# ---- SARIF ------------------------------------------------------------------------------------

def sarif(*args) -> dict:
    result = invoke("fix", "--output-format", "sarif", "-j", "1", *args)
    return json.loads(result.stdout)


def test_sarif_validates_against_the_official_schema(tree):
    (tree / "ds_config.json").write_bytes(ZERO3_CONFIG)
    (tree / "zero.py").write_bytes(ZERO3_SCRIPT)
    (tree / "bad.py").write_bytes(b"def f(:\n    save_pretrained\n")
    doc = sarif("--check", ".")
    if not SARIF_SCHEMA.is_file():
        pytest.skip(f"the SARIF 2.1.0 schema is not at {SARIF_SCHEMA} (set LORA_CODEMOD_SARIF_SCHEMA); "
                    "only the structure was checked")
    import jsonschema

    jsonschema.validate(doc, json.loads(SARIF_SCHEMA.read_text()))


def test_sarif_structure(tree):
    (tree / "ds_config.json").write_bytes(ZERO3_CONFIG)
    (tree / "zero.py").write_bytes(ZERO3_SCRIPT)
    doc = sarif("--check", ".")
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-schema-2.1.0.json")
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [r.code for r in ALL_RULES]
    for rule in rules:
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"] and rule["help"]["text"]
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"].endswith("/")
    results = run["results"]
    for result in results:
        location = result["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        assert not location["artifactLocation"]["uri"].startswith(("/", "file:"))
        assert location["region"]["startLine"] >= 1 and location["region"]["startColumn"] >= 1
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    levels = {(r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]): r["level"]
              for r in results}
    assert levels[("LC002", "train_ddp.py")] == "error" and levels[("LC001", "review.py")] == "warning"
    assert levels[("LC007", "ds_config.json")] == "warning"
    fixed = [r for r in results if r["level"] == "error"]
    assert all("fixes" in r for r in fixed if r["ruleId"] == "LC002")
    replacement = fixed[0]["fixes"][0]["artifactChanges"][0]["replacements"][0]
    # The last lines of the file: the region ends just past its last character (newline included).
    last = DDP.decode().splitlines(keepends=True)[-1]
    assert replacement["deletedRegion"] == {"startLine": 7, "startColumn": 1, "endLine": 8, "endColumn": len(last) + 1}
    assert "is_world_process_zero" in replacement["insertedContent"]["text"]


def test_sarif_uri_is_percent_encoded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my scripts").mkdir()
    (tmp_path / "my scripts" / "t.py").write_bytes(DDP)
    doc = sarif("--check", ".")
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in doc["runs"][0]["results"]}
    assert uris == {"my%20scripts/t.py"}


def test_hunks_cover_insertions_and_ends():
    assert hunks(b"a\nb\n", b"a\nx\nb\n")[0].as_dict() == {"start_line": 2, "end_line": 1, "replacement": "x\n"}
    assert hunks(b"a\nb", b"a\nc")[0].as_dict() == {"start_line": 2, "end_line": 2, "replacement": "c"}


# ---- GitHub -----------------------------------------------------------------------------------

def test_github_annotations(tree):
    result = invoke("fix", "--check", "--output-format", "github", "-j", "1", ".")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    errors = [line for line in lines if line.startswith("::error ")]
    warnings = [line for line in lines if line.startswith("::warning ")]
    assert errors[0].startswith("::error file=train_ddp.py,line=7,col=1,endLine=8,title=LC002::every rank writes")
    assert errors[0].endswith("[would fix]")
    assert len(warnings) == 1 and warnings[0].startswith("::warning file=review.py,line=4,col=9,")
    assert "needs review%3A" not in warnings[0] and "[needs review: " in warnings[0]  # data keeps ':'


def test_github_escaping():
    assert escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    finding = Finding("LC001", "dir,x/a:b.py", 3, 5, "line one\nline two, 100%", Status.FIXED)
    line = github_line(finding, "check")
    assert line == "::error file=dir%2Cx/a%3Ab.py,line=3,col=5,title=LC001::line one%0Aline two, 100%25 [would fix]"
    assert github_line(Finding("LC001", "a.py", 1, 1, "m", Status.SKIPPED, "why"), "check") is None
    assert github_line(Finding("LC001", "a.py", 1, 1, "m", Status.FIXED, suppressed=True), "check") is None


def test_github_ten_per_step_note(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i in range(11):
        (tmp_path / f"t{i:02}.py").write_bytes(DDP)
    result = invoke("fix", "--check", "--output-format", "github", "-j", "1", ".")
    note = [line for line in result.stdout.splitlines() if line.startswith("::notice")]
    assert len(note) == 1 and "only the first 10" in note[0] and "sarif" in note[0]
    assert github_limit_note(10, 10) is None and github_limit_note(11, 0) is not None


def test_output_format_from_configuration(tree):
    (tree / "pyproject.toml").write_text('[tool.lora-codemod]\noutput-format = "json"\n')
    result = invoke("fix", "--check", ".")
    assert json.loads(result.stdout)["mode"] == "check"
    result = invoke("fix", "--check", "--output-format", "text", ".")
    assert result.stdout.startswith("review.py:4:9: LC001 ")
