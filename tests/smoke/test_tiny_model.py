"""`tiny-model`: offline, small, loadable by the Auto classes in a fresh process."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from rich.console import Console

from lora_codemod.smoke.commands import tiny_model as tiny_model_command
from lora_codemod.smoke.report import TerminalStatus

from .conftest import REPO, run_cli

LOAD = """
import sys
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
batch = tokenizer(["hello world, the tiny model"], return_tensors="pt")
out = model(**batch, labels=batch["input_ids"])
print(type(model).__name__, model.config.model_type, tuple(out.logits.shape), tokenizer.unk_token_id in batch["input_ids"][0].tolist())
"""


def test_tiny_model_command_writes_a_loadable_model(tmp_path):
    target = tmp_path / "tiny"
    code, _, _ = run_cli(tiny_model_command, [str(target)])
    assert code == 0
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    assert size < 1024 * 1024, f"{size} bytes is not tiny"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in target.iterdir()}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", LOAD, str(target)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    # BOS, then every word from the fixed vocabulary, so no <unk>; "," is a piece of its own.
    from lora_codemod.smoke.child.tiny_model import VOCAB_SIZE

    assert result.stdout.strip().splitlines()[-1] == f"LlamaForCausalLM llama (1, 7, {VOCAB_SIZE}) False"


def test_tiny_model_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    code, _, stderr = run_cli(tiny_model_command, [str(tmp_path)])
    assert code == 2 and "not empty" in stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_terminal_status_line_shows_time_phase_and_last_line():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100, color_system=None)
    status = TerminalStatus(console)
    status.start("patched run of train.py")
    status.update(3.25, "training 1/2", "{'loss': 4.9}")
    status._status._live.refresh()  # draw now instead of waiting for the refresh thread
    status.stop()
    shown = buffer.getvalue()
    assert "patched run of train.py" in shown and "3.2s" in shown
    assert "training 1/2" in shown and "{'loss': 4.9}" in shown
