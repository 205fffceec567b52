"""The result cache: the same output with and without it, never a stale hit, and hostile use."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lora_codemod.cache import DIRECTORY, ResultCache
from lora_codemod.config import Config
from lora_codemod.findings import SourceResult
from tests.test_hostile import _without_root_privileges

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "fixtures" / "cases"
STALE = (CASES / "01_base_model_other_name" / "input.py").read_bytes()
DDP = (CASES / "136_plain_wrapper_three_way_setup_snippet_review" / "input.py").read_bytes()
ZERO3_SCRIPT = b"""\
from transformers import Trainer, TrainingArguments

trainer = Trainer(model=model, args=TrainingArguments(output_dir="out", deepspeed="ds_config.json"))
trainer.train()
trainer.model.save_pretrained("out")
"""


@pytest.fixture(autouse=True)
def _cache_on(monkeypatch):
    monkeypatch.delenv("LORA_CODEMOD_NO_CACHE", raising=False)


def run(cwd, *args, env=None, prefix=()) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "LORA_CODEMOD_NO_CACHE"}
    full_env.update(env or {})
    return subprocess.run([*prefix, sys.executable, "-m", "lora_codemod", "fix", *args], cwd=cwd,
                          capture_output=True, env=full_env, timeout=300)


def entries(root: Path) -> list[Path]:
    return sorted(p for p in (root / DIRECTORY).rglob("*.json"))


@pytest.fixture
def tree(tmp_path):
    """A fixture input of every fifth case (rewrites, reviews, clean files, the plain wrappers), each
    in its own directory as a user's scripts would be."""
    cases = sorted(c for c in CASES.iterdir() if (c / "input.py").is_file())
    for case in cases[::5] + [c for c in cases if c.name.startswith(("136_", "137_", "147_"))]:
        if not (tmp_path / case.name).exists():
            (tmp_path / case.name).mkdir()
            shutil.copy(case / "input.py", tmp_path / case.name / "train.py")
    return tmp_path


@pytest.mark.parametrize("flags", [["--check"], ["--diff"], ["--check", "--output-format", "json"],
                                   ["--check", "--output-format", "sarif"], ["--check", "-j", "1"],
                                   ["--diff", "--unsafe-fixes", "-j", "2"]])
def test_byte_identical_with_and_without_the_cache(tree, flags):
    uncached = run(tree, *flags, "--no-cache", ".")
    assert not (tree / DIRECTORY).exists()  # --no-cache neither reads nor writes
    cold = run(tree, *flags, ".")
    warm = run(tree, *flags, ".")
    assert entries(tree)
    for other in (cold, warm):
        assert (other.returncode, other.stdout, other.stderr) == (uncached.returncode, uncached.stdout,
                                                                   uncached.stderr)


def test_fix_from_a_warm_cache_writes_what_fix_writes(tree, tmp_path_factory):
    fresh = tmp_path_factory.mktemp("fresh")
    shutil.copytree(tree, fresh, dirs_exist_ok=True)
    assert run(tree, "--check", ".").returncode == 1  # fills the cache
    a, b = run(tree, ".", "--unsafe-fixes"), run(fresh, ".", "--unsafe-fixes", "--no-cache")
    assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr)
    for path in sorted(fresh.rglob("train.py")):
        assert (tree / path.relative_to(fresh)).read_bytes() == path.read_bytes()


def _result(cache: ResultCache, path: str, source: bytes):
    return cache.get(cache.key(path, source), path, source)


def test_a_hit_needs_the_same_bytes_settings_path_and_tool(tmp_path):
    cache = ResultCache(str(tmp_path / DIRECTORY), Config())
    result = SourceResult("train.py", STALE, STALE.replace(b"model.save", b"model_to_save.save"))
    cache.put(cache.key("train.py", STALE), result)
    hit = _result(cache, "train.py", STALE)
    assert hit is not None and hit.output == result.output and hit.findings == result.findings
    assert _result(cache, "train.py", STALE + b"\n") is None  # the bytes changed
    assert _result(cache, "other/train.py", STALE) is None  # another path
    for changed in (Config(select=frozenset({"LC001"})), Config(ignore=frozenset({"LC004"})),
                    Config(flag_pattern="adapter"), Config(unsafe_fixes=True),
                    Config(trainer_classes=frozenset({"Loop"})), Config(include_generated=True)):
        assert _result(ResultCache(str(tmp_path / DIRECTORY), changed), "train.py", STALE) is None, changed


def test_a_zero3_config_beside_the_file_is_part_of_the_key(tmp_path):
    (tmp_path / "train.py").write_bytes(ZERO3_SCRIPT)
    config = tmp_path / "ds_config.json"
    config.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    first = run(tmp_path, "--check", "train.py")
    assert first.returncode == 1 and b"LC007" in first.stdout
    config.write_text(json.dumps({"zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True}}))
    second = run(tmp_path, "--check", "train.py")
    assert b"LC007" not in second.stdout  # not the cached LC007 finding
    assert second.stdout == run(tmp_path, "--check", "--no-cache", "train.py").stdout
    config.unlink()  # a config that goes away changes the key too
    assert run(tmp_path, "--check", "train.py").stdout == run(tmp_path, "--check", "--no-cache", "train.py").stdout


def test_editing_a_file_between_runs_is_seen(tmp_path):
    script = tmp_path / "train.py"
    script.write_bytes(STALE)
    assert run(tmp_path, "--check", "train.py").returncode == 1
    script.write_bytes(STALE.replace(b"model.save_pretrained", b"trainer.model.save_pretrained"))
    assert run(tmp_path, "--check", "train.py").returncode == 0


def test_environment_and_flag_turn_it_off(tmp_path):
    (tmp_path / "train.py").write_bytes(STALE)
    run(tmp_path, "--check", "train.py", env={"LORA_CODEMOD_NO_CACHE": "1"})
    assert not (tmp_path / DIRECTORY).exists()
    run(tmp_path, "--check", "train.py")
    assert entries(tmp_path)
    assert (tmp_path / DIRECTORY / ".gitignore").read_text().splitlines()[-1] == "*"  # never committed
    assert (tmp_path / DIRECTORY / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")


def test_cache_dir_from_the_configuration_is_relative_to_it(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.lora-codemod]\ncache-dir = "build/lc-cache"\n')
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_bytes(STALE)
    run(tmp_path / "src", "--check", "train.py")
    assert list((tmp_path / "build" / "lc-cache").rglob("*.json"))
    assert not (tmp_path / "src" / DIRECTORY).exists()


def test_truncated_corrupt_and_foreign_entries_are_misses(tmp_path):
    (tmp_path / "train.py").write_bytes(STALE)
    expected = run(tmp_path, "--check", "--no-cache", "train.py")
    run(tmp_path, "--check", "train.py")
    (entry,) = entries(tmp_path)
    for damage in (entry.read_bytes()[:20], b"not json", json.dumps({"schema": 999}).encode(),
                   json.dumps({"schema": 1, "key": "someone else's"}).encode()):
        entry.write_bytes(damage)
        got = run(tmp_path, "--check", "train.py")
        assert (got.returncode, got.stdout, got.stderr) == (expected.returncode, expected.stdout, expected.stderr)
    # an entry of another version of the tool sits in another directory: never read
    other = tmp_path / DIRECTORY / "0.0.1-0123456789abcdef" / entry.parent.name
    other.mkdir(parents=True)
    (other / entry.name).write_text("{}")
    assert run(tmp_path, "--check", "train.py").stdout == expected.stdout


def test_a_read_only_cache_warns_once_and_the_run_goes_on(tmp_path):
    prefix = _without_root_privileges()
    if prefix is None:
        pytest.skip("running as root without setpriv: permission bits cannot be made to apply")
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_bytes(STALE)
    expected = run(tmp_path, "--check", "--no-cache", ".")
    (tmp_path / DIRECTORY).mkdir()
    (tmp_path / DIRECTORY).chmod(0o555)
    try:
        got = run(tmp_path, "--check", ".", prefix=prefix)
    finally:
        (tmp_path / DIRECTORY).chmod(0o755)
    assert got.returncode == expected.returncode and got.stdout == expected.stdout
    warnings = [line for line in got.stderr.decode().splitlines() if line.startswith("warning: cannot write")]
    assert len(warnings) == 1, got.stderr.decode()
    assert not entries(tmp_path)


def test_two_runs_at_once(tree):
    processes = [subprocess.Popen([sys.executable, "-m", "lora_codemod", "fix", "--check", "-j", "2", "."], cwd=tree,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env={k: v for k, v in os.environ.items() if k != "LORA_CODEMOD_NO_CACHE"})
                 for _ in range(3)]
    outputs = [p.communicate(timeout=300) + (p.returncode,) for p in processes]
    assert len(set(outputs)) == 1
    assert not [p for p in (tree / DIRECTORY).rglob("*.tmp")]  # no half-written entry left
    again = run(tree, "--check", ".")
    assert (again.stdout, again.stderr, again.returncode) == outputs[0]


def test_a_clean_file_is_remembered_by_its_stat_and_an_edit_is_seen(tmp_path):
    clean = tmp_path / "util.py"
    clean.write_bytes(b"def helper(x):\n    return x + 1\n")
    run(tmp_path, "--check", ".")
    (manifest,) = (tmp_path / DIRECTORY).rglob("clean-*.json")
    assert str(clean) in json.loads(manifest.read_text())
    clean.write_bytes(STALE)  # the same path, now a script that needs the fix
    got = run(tmp_path, "--check", ".")
    assert got.returncode == 1 and b"LC001" in got.stdout


def test_a_file_that_saves_is_never_remembered_as_clean(tmp_path):
    """What LC007 reads beside a file can change its answer: such a file is read every time."""
    script = tmp_path / "export.py"
    script.write_bytes(b"model = load()\ntrainer.train()\ntrainer.save_model('out')\n")
    assert run(tmp_path, "--check", ".").returncode == 0
    (tmp_path / "ds_config.json").write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    got = run(tmp_path, "--check", ".")
    assert got.stdout == run(tmp_path, "--check", "--no-cache", ".").stdout
    assert b"LC007" in got.stdout
