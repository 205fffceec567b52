"""Shared fixtures for the smoke tests: one tiny model per session, helpers to run the commands."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
FIXTURE_SCRIPTS = REPO / "fixtures" / "scripts"
# Sibling modules the fixture scripts import (a project's own helpers, not scripts to run).
HELPER_MODULES = ("tiny_data.py", "audio_text_model.py")

# The save block every fixture script ends with, as written.
SAVE_BLOCK = """    if args.use_lora:
        lora_output_dir = os.path.join(args.output_dir, "lora_adapters")
        model.save_pretrained(lora_output_dir)
        print(f"LoRA adapters saved to {lora_output_dir}")
"""


@pytest.fixture(scope="session", autouse=True)
def offline_hub():
    # Nothing in these tests may reach a model hub; children inherit this too.
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield
    if previous is None:
        os.environ.pop("HF_HUB_OFFLINE", None)
    else:
        os.environ["HF_HUB_OFFLINE"] = previous


@pytest.fixture(scope="session", autouse=True)
def environment_cache(tmp_path_factory):
    """The tiny-model and stand-in cache of these runs: a temporary directory, never the user's."""
    from lora_codemod.smoke.child.cache import CACHE_ENV

    previous = os.environ.get(CACHE_ENV)
    root = tmp_path_factory.mktemp("lora-codemod-cache")
    os.environ[CACHE_ENV] = str(root)
    yield root
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from lora_codemod.smoke.child.tiny_model import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model").path


def copy_fixture(name: str, destination: Path, replace: tuple[str, str] | None = None) -> Path:
    """Copy a fixture script and its sibling helper; optionally swap one exact block of text."""
    destination.mkdir(parents=True, exist_ok=True)
    for helper in HELPER_MODULES:
        shutil.copy(FIXTURE_SCRIPTS / helper, destination / helper)
    source = (FIXTURE_SCRIPTS / name).read_text(encoding="utf-8")
    if replace is not None:
        old, new = replace
        assert old in source, f"{name} no longer contains the block this test rewrites"
        source = source.replace(old, new)
    target = destination / name
    target.write_text(source, encoding="utf-8")
    return target


def run_cli(command, args: list[str]) -> tuple[int, dict | None, str]:
    """Invoke a click command in-process; returns (exit code, parsed --json output or None, stderr)."""
    result = CliRunner().invoke(command, args, catch_exceptions=False)
    parsed = None
    if "--json" in args and result.stdout.strip():
        parsed = json.loads(result.stdout)
    return result.exit_code, parsed, result.stderr


def training_args(model: str, max_steps: int = 2) -> list[str]:
    return ["--", "--model_path", model, "--output_dir", "{output_dir}", "--use_lora", "--max_steps", str(max_steps)]


def check(run: dict, name: str) -> dict:
    found = [c for c in run["checks"] if c["name"] == name]
    assert found, f"no check named {name!r}; checks: {[c['name'] for c in run['checks']]}"
    return found[0]
