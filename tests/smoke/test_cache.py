"""The environment's cache of tiny models and stand-in directories: made once, copied per run, atomic."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from lora_codemod.smoke.child import cache


def _builder(calls: list, delay: float = 0.0):
    def build(directory: Path):
        calls.append(directory)
        time.sleep(delay)
        (directory / "config.json").write_text('{"built": %d}' % len(calls))

    return build


def test_an_entry_is_built_once_and_every_run_gets_its_own_copy(tmp_path):
    calls = []
    first = tmp_path / "run1" / "tiny_model"
    second = tmp_path / "run2" / "tiny_model"
    assert cache.materialise(tmp_path / "cache", "tiny-llama", _builder(calls), first) is False  # made now
    assert cache.materialise(tmp_path / "cache", "tiny-llama", _builder(calls), second) is True  # from the cache
    assert len(calls) == 1
    assert first.joinpath("config.json").read_text() == second.joinpath("config.json").read_text() == '{"built": 1}'
    assert not (first / cache.COMPLETE).exists()  # the marker stays in the cache
    first.joinpath("config.json").write_text("a script wrote into its model directory")
    entry = tmp_path / "cache" / cache.entry_key("tiny-llama")
    assert entry.joinpath("config.json").read_text() == '{"built": 1}'
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [entry.name]  # no staging left behind


def test_the_key_follows_the_child_environment_and_the_code(monkeypatch):
    key = cache.entry_key("tiny-llama")
    assert key.startswith("tiny-llama-transformers") and "-tokenizers" in key
    monkeypatch.setattr(cache, "_version", lambda name: "4.36.2" if name == "transformers" else "0.15.2")
    other = cache.entry_key("tiny-llama")
    assert other.startswith("tiny-llama-transformers4.36.2-tokenizers0.15.2-") and other != key
    assert cache.entry_key("standin-qwen2") != cache.entry_key("standin-gpt2")
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "0123456789")
    assert cache.entry_key("tiny-llama").endswith("-0123456789")


def test_an_incomplete_entry_is_rebuilt(tmp_path):
    entry = tmp_path / "cache" / cache.entry_key("tiny-llama")
    entry.mkdir(parents=True)
    (entry / "config.json").write_text("half written")  # no completion marker: a run killed mid-copy
    calls = []
    assert cache.materialise(tmp_path / "cache", "tiny-llama", _builder(calls), tmp_path / "run" / "m") is False
    assert len(calls) == 1 and (tmp_path / "run" / "m" / "config.json").read_text() == '{"built": 1}'


def test_ranks_that_start_together_get_one_whole_entry(tmp_path):
    calls, errors, results = [], [], []

    def rank(index):
        try:
            results.append(cache.materialise(tmp_path / "cache", "tiny-llama", _builder(calls, delay=0.2),
                                             tmp_path / "run" / "tiny_model"))
        except Exception as exc:  # pragma: no cover - the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=rank, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert (tmp_path / "run" / "tiny_model" / "config.json").is_file()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cache.entry_key("tiny-llama")]
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["tiny_model"]


def test_a_cache_that_cannot_be_written_is_not_an_error(tmp_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    calls = []
    assert cache.materialise(not_a_directory / "cache", "tiny-llama", _builder(calls), tmp_path / "run" / "m") is False
    assert len(calls) == 1 and (tmp_path / "run" / "m" / "config.json").is_file()
    assert cache.materialise(None, "tiny-llama", _builder(calls), tmp_path / "run" / "n") is False  # no cache at all
    assert len(calls) == 2


@pytest.mark.parametrize("platform, env, expected", [
    ("linux", {"LORA_CODEMOD_CACHE_DIR": "/x/cache"}, "/x/cache"),
    ("linux", {"XDG_CACHE_HOME": "/x/xdg"}, "/x/xdg/lora-codemod"),
    ("linux", {}, "HOME/.cache/lora-codemod"),
    ("darwin", {}, "HOME/Library/Caches/lora-codemod"),
])
def test_the_cache_lives_in_the_user_cache_directory(monkeypatch, tmp_path, platform, env, expected):
    for key in ("LORA_CODEMOD_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(cache.sys, "platform", platform)
    monkeypatch.setattr(cache.Path, "home", classmethod(lambda cls: tmp_path))
    assert str(cache.default_root()) == expected.replace("HOME", str(tmp_path))
