"""Run a snippet in a fresh Python with the smoke instrumentation, as the child of a smoke run has it.

The snippet first does what a script would do *without* the stand-in or shim (the control: it
must fail), then `INSTALL()` installs the instrumentation, then the same call again. It prints
its findings with `report(key, value)`; the parent gets them and the recorded stand-ins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PRELUDE = """
import json, os, sys
from lora_codemod.smoke.child.instrument import install

RESULTS = {}

def report(key, value):
    RESULTS[key] = value

def fails(function):
    try:
        function()
    except Exception as exc:
        return type(exc).__name__
    return None

def INSTALL():
    install(os.environ["EVENTS"], json.loads(os.environ["SETTINGS"]))
"""
EPILOGUE = """
print("RESULTS " + json.dumps(RESULTS, default=str))
"""


def run_snippet(code: str, tmp_path: Path, settings: dict | None = None, env: dict | None = None,
                python: str | None = None) -> tuple[dict, list[dict]]:
    """`python`: another interpreter (transformers 4.x through LORA_CODEMOD_OLD_PYTHON); default this one."""
    events = tmp_path / "events"
    settings = {"standins": True, "cpu": True, "max_steps": 2, "cache": str(tmp_path / "standins"), **(settings or {})}
    child_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "WANDB_MODE": "disabled",
        "EVENTS": str(events),
        "SETTINGS": json.dumps(settings),
        **(env or {}),
    }
    script = tmp_path / "snippet.py"
    script.write_text(PRELUDE + textwrap.dedent(code) + EPILOGUE)
    result = subprocess.run([python or sys.executable, str(script)], capture_output=True, text=True, env=child_env, cwd=tmp_path)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULTS ")]
    assert result.returncode == 0 and lines, f"snippet failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    recorded = []
    for path in sorted(events.glob("*.jsonl")) if events.is_dir() else []:
        recorded += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    standins = [e for e in recorded if e.get("kind") == "standin"]
    return json.loads(lines[-1][len("RESULTS "):]), standins
