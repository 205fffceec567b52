"""--color (NO_COLOR, FORCE_COLOR), coloured finding lines, --statistics, and the lines for a run
that finds no Python file or nothing that saves a model."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from lora_codemod.cli import cli
from tests.helpers import DDP_SCRIPT

BROKEN = DDP_SCRIPT + b"""\
    tokenizer.save_pretrained(args.output_dir)
"""
ESC = "\x1b["


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def invoke(*args, env=None):
    return CliRunner(env=env).invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    (tmp_path / "train.py").write_bytes(BROKEN)
    return tmp_path


def test_color_never_and_auto_on_a_pipe(tree):
    assert ESC not in invoke("fix", "--check", "train.py").output
    assert ESC not in invoke("fix", "--check", "--color", "never", "train.py").output


def test_color_always_colours_finding_lines(tree):
    out = invoke("fix", "--check", "--color", "always", "--verbose", "train.py").output
    line = next(line for line in out.splitlines() if "LC002" in line)
    assert line.startswith("\x1b[1mtrain.py:7:1:\x1b[0m \x1b[1m\x1b[31mLC002\x1b[0m every rank")
    assert line.endswith("\x1b[32m [would fix]\x1b[0m")
    left_alone = next(line for line in out.splitlines() if "left alone" in line)
    assert "\x1b[2mLC001\x1b[0m" in left_alone


def test_force_color_and_no_color(tree):
    assert ESC in invoke("fix", "--check", "train.py", env={"FORCE_COLOR": "1"}).output
    assert ESC not in invoke("fix", "--check", "train.py", env={"FORCE_COLOR": "1", "NO_COLOR": "1"}).output
    assert ESC not in invoke("fix", "--check", "--no-color", "train.py", env={"FORCE_COLOR": "1"}).output
    assert ESC in invoke("fix", "--check", "--color", "always", "train.py", env={"NO_COLOR": "1"}).output


def test_color_always_colours_the_diff(tree):
    out = invoke("fix", "--diff", "--color", "always", "train.py").output
    assert any(line.startswith("+if trainer.is_world_process_zero():") for line in _plain(out).splitlines())
    assert any(ESC in line and "is_world_process_zero" in line for line in out.splitlines())


def test_statistics(tree):
    out = invoke("fix", "--check", "--statistics", "train.py").output.splitlines()
    stats = [line for line in out if "  LC0" in line]
    assert stats == [
        "    2  LC001  stale-model-save                   1 would fix, 0 need review, 1 left alone, 0 suppressed",
        "    1  LC002  rank-zero-adapter-save             1 would fix, 0 need review, 0 left alone, 0 suppressed",
    ]
    assert out[-1].startswith("2 would fix in 1 file")


def test_no_python_files_is_a_warning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("hi")
    result = invoke("fix", "--check", ".")
    assert result.exit_code == 0
    assert "warning: no Python files in .; nothing checked." in result.stderr


def test_nothing_here_saves_a_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.py").write_text("print('hello')\n")
    (tmp_path / "b.py").write_text("import torch\n")
    result = invoke("fix", "--check", ".")
    assert result.exit_code == 0
    assert "nothing here saves a model: none of the 2 files calls save_pretrained or save_model" in result.output
    (tmp_path / "c.py").write_bytes(BROKEN)
    assert "nothing here saves a model" not in invoke("fix", "--check", ".").output
