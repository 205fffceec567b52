"""The `fix`, `rules` and `explain` commands, through click's runner and a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from lora_codemod.cli import cli
from tests.helpers import DDP_SCRIPT

BROKEN = DDP_SCRIPT
CLEAN = b"print('nothing to do here')\n"
REVIEW = b"""\
def save(m, d):
    trainer = Trainer(model=model, args=training_args)
    if args.use_lora:
        m.save_pretrained(d)
"""


@pytest.fixture
def tree(tmp_path, monkeypatch):
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "train.py").write_bytes(BROKEN)
    (tmp_path / "trainer" / "clean.py").write_bytes(CLEAN)
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "vendored.py").write_bytes(BROKEN)  # excluded directory
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def snapshot(root):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*.py")}


def test_fix_writes_and_reports(tree):
    result = invoke("fix", "trainer")
    assert result.exit_code == 0, result.output
    fixed = (tree / "trainer" / "train.py").read_bytes()
    assert b"if trainer.is_world_process_zero():\n    if args.use_lora:\n" in fixed
    assert b"model_to_save.save_pretrained(" in fixed
    lines = result.output.splitlines()
    assert "trainer/train.py:7:1: LC002 " in result.output and lines[0].endswith("[fixed]")
    assert any(line.startswith("trainer/train.py:8:5: LC001 ") for line in lines)
    assert lines[-1].startswith("2 fixed in 1 file, 0 need review, 0 left alone (2 files checked)")
    assert (tree / ".venv" / "vendored.py").read_bytes() == BROKEN  # excluded
    assert invoke("fix", "trainer").exit_code == 0
    assert (tree / "trainer" / "train.py").read_bytes() == fixed  # idempotent


def test_default_path_is_current_directory(tree):
    result = invoke("fix", "--check")
    assert result.exit_code == 1
    assert "trainer/train.py" in result.output and "vendored" not in result.output


def test_check_writes_nothing_and_fails(tree):
    before = snapshot(tree)
    result = invoke("fix", "--check", "trainer")
    assert result.exit_code == 1
    assert "[would fix]" in result.output
    assert snapshot(tree) == before


def test_check_passes_on_fixed_tree(tree):
    invoke("fix", "trainer")
    result = invoke("fix", "--check", "trainer")
    assert result.exit_code == 0, result.output


def test_needs_review_fails_fix_and_check(tree):
    (tree / "trainer" / "review.py").write_bytes(REVIEW)
    result = invoke("fix", "trainer/review.py")
    assert result.exit_code == 1
    assert "[needs review: cannot tell which object `m` holds]" in result.output
    assert (tree / "trainer" / "review.py").read_bytes() == REVIEW


def test_diff_writes_nothing_and_goes_to_stdout(tree):
    before = snapshot(tree)
    result = CliRunner().invoke(cli, ["fix", "--diff", "trainer"])
    assert result.exit_code == 1
    assert result.stdout.startswith("--- a/trainer/train.py\n+++ b/trainer/train.py\n@@ ")
    assert "LC001" not in result.stdout and "LC001" in result.stderr  # findings on stderr
    assert snapshot(tree) == before


def test_check_with_diff_shows_the_diff_and_writes_nothing(tree):
    before = snapshot(tree)
    result = CliRunner().invoke(cli, ["fix", "--check", "--diff", "trainer"])
    assert result.exit_code == 1
    assert "+    if args.use_lora:" in result.stdout and "[would fix]" in result.stderr
    assert snapshot(tree) == before


def test_unknown_rule_code_is_a_usage_error(tree):
    result = CliRunner().invoke(cli, ["fix", "--select", "LC009", "trainer"])
    assert result.exit_code == 2 and "unknown rule code" in result.output


def test_bad_flag_pattern_is_a_usage_error(tree):
    result = CliRunner().invoke(cli, ["fix", "--flag-pattern", "(", "trainer"])
    assert result.exit_code == 2 and "flag-pattern" in result.output


def test_flag_pattern_option(tree):
    # a correct save (LC004 in a LoRA block, nothing outside one): only the flag makes it a LoRA block
    source = b"model = get_peft_model(model, c)\ntrainer = Trainer(model=model)\nif cfg.adapters_on:\n    model.save_pretrained(d)\n"
    (tree / "trainer" / "train.py").write_bytes(source)
    assert invoke("fix", "--check", "trainer").exit_code == 0
    assert invoke("fix", "--check", "--flag-pattern", "adapters_on", "trainer").exit_code == 1


def test_unparsable_file_exits_2_and_others_are_processed(tree):
    (tree / "trainer" / "bad.py").write_bytes(b"if args.use_lora:\n    model.save_pretrained(\n")
    result = CliRunner().invoke(cli, ["fix", "trainer"])
    assert result.exit_code == 2
    assert "trainer/bad.py:" in result.stderr and "cannot parse" in result.stderr
    assert b"model_to_save" in (tree / "trainer" / "train.py").read_bytes()


def test_missing_path_exits_2(tree):
    result = CliRunner().invoke(cli, ["fix", "nope/"])
    assert result.exit_code == 2 and "nope/: error: no such file or directory" in result.stderr


def test_stdin_mode(tree):
    result = CliRunner().invoke(cli, ["fix", "-", "--stdin-filename", "train.py"], input=BROKEN)
    assert result.exit_code == 0
    assert b"model_to_save.save_pretrained(" in result.stdout_bytes
    assert "train.py:8:5: LC001" in result.stderr
    compile(result.stdout_bytes, "train.py", "exec")


def test_stdin_unchanged_source_is_echoed(tree):
    result = CliRunner().invoke(cli, ["fix", "-"], input=CLEAN)
    assert result.exit_code == 0 and result.stdout_bytes == CLEAN


def test_stdin_cannot_be_mixed_with_paths(tree):
    assert CliRunner().invoke(cli, ["fix", "-", "trainer"]).exit_code == 2


def test_left_alone_is_counted_by_default_and_listed_with_verbose(tree):
    (tree / "trainer" / "tok.py").write_bytes(
        b"trainer = Trainer(model=m)\nif args.use_lora:\n    tokenizer.save_pretrained(d)\n")
    summary = "0 fixed, 0 need review, 1 left alone (1 file checked).\n"
    assert invoke("fix", "trainer/tok.py").output == summary  # counted, not listed
    assert invoke("fix", "-q", "trainer/tok.py").output == summary  # -q is the default
    verbose = invoke("fix", "--verbose", "trainer/tok.py").output
    assert verbose == ("trainer/tok.py:3:5: LC001 `tokenizer.save_pretrained` in a LoRA block "
                       "[left alone: `tokenizer` is a tokenizer, processor or config, not a model]\n" + summary)
    assert invoke("fix", "-v", "-q", "trainer/tok.py").output == verbose


def test_default_output_lists_what_needs_action_only(tree):
    (tree / "trainer" / "tok.py").write_bytes(BROKEN + b"    tokenizer.save_pretrained(d)\n")
    out = invoke("fix", "--check", "trainer/tok.py").output
    assert "LC002" in out and "LC001" in out and "[would fix]" in out
    assert "[left alone" not in out and out.splitlines()[-1].startswith("2 would fix in 1 file, 0 need review, 1 left alone")
    assert "[left alone: `tokenizer` is a tokenizer" in invoke("fix", "--check", "-v", "trainer/tok.py").output
    # Machine formats keep every finding with its status, as before.
    doc = json.loads(invoke("fix", "--check", "--output-format", "json", "trainer/tok.py").stdout)
    assert "left alone" in {f["status"] for f in doc["files"][0]["findings"]}


def test_rules_and_explain():
    listing = invoke("rules").output
    assert [line.split()[0] for line in listing.splitlines()] == [f"LC00{n}" for n in range(1, 9)]
    text = invoke("explain", "lc001").output
    for section in ("What it does", "Why is this bad?", "Example", "Fix", "When it does not apply"):
        assert section in text
    assert "is not the object the trainers train" not in text and "stale" in text
    assert "model_to_save.model.text_model.save_pretrained" in invoke("explain", "lc004").output
    bad = CliRunner().invoke(cli, ["explain", "LC999"])
    assert bad.exit_code == 2 and "unknown rule" in bad.stderr


# -- a real process: console entry point, pipes, colour, git apply ---------------------------

def run_cli(*args, cwd, input=None, env=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "lora_codemod", *args], cwd=cwd, input=input, check=False,
                          capture_output=True, env=full_env)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed: cannot check `git apply`")
def test_piped_diff_is_accepted_by_git_apply(tree):
    crlf = BROKEN.replace(b"\n", b"\r\n").replace(b"    ", b"\t")
    (tree / "trainer" / "crlf_tabs.py").write_bytes(crlf)
    (tree / "trainer" / "no_eol.py").write_bytes(BROKEN.rstrip(b"\n"))
    subprocess.run(["git", "init", "-q"], cwd=tree, check=True)
    proc = run_cli("fix", "--diff", "trainer", cwd=tree)
    assert proc.returncode == 1
    assert b"\x1b[" not in proc.stdout, "colour in a pipe"
    apply = subprocess.run(["git", "apply", "-v", "-"], cwd=tree, input=proc.stdout, capture_output=True, check=False)
    assert apply.returncode == 0, apply.stderr.decode()
    # the patched tree is what `fix` would have written, byte for byte
    after_apply = snapshot(tree / "trainer")
    assert run_cli("fix", "--check", "trainer", cwd=tree).returncode == 0
    assert {p: b for p, (b, _) in snapshot(tree / "trainer").items()} == {p: b for p, (b, _) in after_apply.items()}


def test_subprocess_exit_codes_and_stdin(tree):
    assert run_cli("fix", "--check", "trainer/clean.py", cwd=tree).returncode == 0
    assert run_cli("fix", "--check", "trainer", cwd=tree).returncode == 1
    assert run_cli("fix", "--check", "missing.py", cwd=tree).returncode == 2
    proc = run_cli("fix", "-", cwd=tree, input=BROKEN)
    assert proc.returncode == 0 and b"model_to_save" in proc.stdout


def test_colour_only_on_a_terminal_and_never_with_no_color(tree):
    pty = pytest.importorskip("pty", reason="no pty module on this platform: colour needs a terminal")
    import select

    base_env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}

    def on_terminal(*args, env=None):
        master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "lora_codemod", *args], cwd=tree, stdout=slave,
                                stderr=subprocess.DEVNULL, env={**base_env, "TERM": "xterm", **(env or {})})
        os.close(slave)
        chunks = []
        while True:
            ready, _, _ = select.select([master], [], [], 10)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=30)
        os.close(master)
        return b"".join(chunks)

    assert b"\x1b[" in on_terminal("fix", "--diff", "trainer")
    assert b"\x1b[" not in on_terminal("fix", "--diff", "--no-color", "trainer")
    assert b"\x1b[" not in on_terminal("fix", "--diff", "trainer", env={"NO_COLOR": "1"})


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed: .gitignore handling needs it")
def test_directories_skip_what_git_ignores(tree):
    subprocess.run(["git", "init", "-q"], cwd=tree, check=True)
    (tree / ".gitignore").write_text("generated/\n*_scratch.py\n")
    (tree / "trainer" / "generated").mkdir()
    (tree / "trainer" / "generated" / "copy.py").write_bytes(BROKEN)
    (tree / "trainer" / "train_scratch.py").write_bytes(BROKEN)
    result = invoke("fix", "--check", "trainer")
    assert "trainer/train.py" in result.output
    assert "generated" not in result.output and "scratch" not in result.output
    # named explicitly, an ignored file or directory is still checked
    assert "train_scratch.py" in invoke("fix", "--check", "trainer/train_scratch.py").output
    assert "trainer/generated/copy.py" in invoke("fix", "--check", "trainer/generated").output


def test_directories_outside_git_are_walked(tree):
    (tree / "trainer" / "sub").mkdir()
    (tree / "trainer" / "sub" / "deep.py").write_bytes(BROKEN)
    result = invoke("fix", "--check", "trainer")
    assert "trainer/sub/deep.py" in result.output and "vendored" not in result.output
