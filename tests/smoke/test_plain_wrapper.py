"""LoRA inside a plain nn.Module wrapper (issue 13, contract v3): smoke says why the save failed.

The fixtures save with the usual unwrap snippet inside a `try/except` that logs the error, so the
unpatched script exits 0 with no adapter. The child records the `save_pretrained` lookup that
fails on the plain wrapper (rank, class, the AttributeError the script swallowed) and the
verdict names it. Each variant runs once (`--compare --unsafe-fixes`), its two halves tested apart:
unpatched it fails naming the error; patched (LC001 saves from the LoRA placements) it passes.
"""

from __future__ import annotations

import pytest
import torch.nn as nn

from lora_codemod.smoke import commands
from lora_codemod.smoke.commands import smoke

from .conftest import FIXTURE_SCRIPTS, check, copy_fixture, run_cli, training_args

SINGLE = "train_plain_wrapper_lora.py"
DDP = "train_plain_wrapper_lora_ddp.py"
ERROR = "AttributeError: 'AudioModelWrapper' object has no attribute 'save_pretrained'"


def _compare(name: str, tmp_path, tiny_model, *extra: str) -> dict:
    script = copy_fixture(name, tmp_path)
    code, parsed, _ = run_cli(smoke, [str(script), "--compare", "--unsafe-fixes", "--device", "cpu", "--json", *extra,
                                      *training_args(str(tiny_model))])
    unpatched, patched = parsed["runs"]
    return {"code": code, "unpatched": unpatched, "patched": patched, "script": script}


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_model):
    return _compare(SINGLE, tmp_path_factory.mktemp("single"), tiny_model)


@pytest.fixture(scope="module")
def ddp(tmp_path_factory, tiny_model):
    return _compare(DDP, tmp_path_factory.mktemp("ddp"), tiny_model, "--nproc", "2")


def _explain(run: dict) -> str:
    return run["verdict"] + "\n" + "\n".join(run["output_tail"][-40:])


def _line_of(script, text: str) -> int:
    return next(n for n, line in enumerate(script.read_text().splitlines(), 1) if text in line)


def _assert_swallowed_attribute_error(result: dict, ranks: list[int]) -> None:
    run = result["unpatched"]
    assert run["exit_code"] == 0, _explain(run)  # the script caught the error: it "succeeded"
    assert run["status_code"] == 1
    line = _line_of(result["script"], "model_to_save.save_pretrained(lora_output_dir)")
    assert [(m["rank"], m["class"].rsplit(".", 1)[-1], m["error"], m["where"]) for m in run["missing_saves"]] == [
        (rank, "AudioModelWrapper", ERROR, f"{result['script']}:{line}") for rank in ranks
    ]
    failed = check(run, "adapter save ran")
    assert failed["status"] == "fail"
    # The verdict says why in its own words, not only "adapter_config.json missing".
    assert run["verdict"].startswith(
        f"FAIL: adapter save ran: rank 0: AudioModelWrapper.save_pretrained ({result['script'].name}:{line}) "
        f"raised {ERROR}; the script caught it and went on, so no adapter was saved there"
    ), run["verdict"]
    assert "AudioModelWrapper is a plain nn.Module: save the PEFT model inside it" in run["verdict"]


def test_unpatched_plain_wrapper_fails_naming_the_swallowed_attribute_error(single):
    _assert_swallowed_attribute_error(single, ranks=[0])
    run = single["unpatched"]
    # What the run did save: Trainer.save_model of the wrapper (its whole state dict, no adapter).
    assert [(s["api"], s["class"].rsplit(".", 1)[-1]) for s in run["saves"] if s["via"] is None] == [
        ("save_model", "AudioModelWrapper")]
    assert check(run, "adapter_config.json")["status"] == "fail"


def test_unpatched_plain_wrapper_under_torchrun_fails_on_rank_zero(ddp):
    _assert_swallowed_attribute_error(ddp, ranks=[0])  # rank 1 never reaches the guarded save
    run = ddp["unpatched"]
    assert sorted(g["rank"] for g in run["process_groups"]) == [0, 1]


def test_patched_plain_wrapper_with_unsafe_fixes_passes(single):
    run = single["patched"]
    assert run["status_code"] == 0, _explain(run)
    assert run["missing_saves"] == []
    assert [s["class"].rsplit(".", 1)[-1] for s in run["saves"] if s["via"] is None and s["api"] == "save_pretrained"] == [
        "PeftModelForCausalLM"]
    assert run["verdict"] == "PASS: a valid LoRA adapter in {output_dir}/lora_adapters"
    assert single["code"] == 0


def test_patched_plain_wrapper_with_unsafe_fixes_passes_under_torchrun(ddp):
    run = ddp["patched"]
    assert run["status_code"] == 0, _explain(run)
    assert run["missing_saves"] == []
    # LC003 moved trainer.save_model() out of the guard: every rank calls it, rank 0 writes.
    assert sorted((s["rank"], s["api"], s["writes"]) for s in run["saves"] if s["via"] is None) == [
        (0, "save_model", True), (0, "save_pretrained", True), (1, "save_model", False)]
    assert run["adapter_writers"] == [0]
    assert run["verdict"] == "PASS: a valid LoRA adapter in {output_dir}/lora_adapters, written by rank 0 alone"
    assert ddp["code"] == 0


# ---------------------------------------------------------------- the recording, in this process


class _Log:
    def __init__(self):
        self.events = []

    def emit(self, kind, **fields):
        self.events.append({"kind": kind, **fields})


def test_only_a_direct_save_pretrained_lookup_on_the_watched_class_is_recorded():
    from lora_codemod.smoke.child.instrument import watch_missing_save

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(2, 2)

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Inner()

    log, wrapper = _Log(), Wrapper()
    # Control: an unwatched wrapper raises the same error and nothing is recorded.
    with pytest.raises(AttributeError):
        wrapper.save_pretrained("out")
    watch_missing_save(log, wrapper)
    assert log.events == []
    assert not hasattr(wrapper, "save_pretrained") and getattr(wrapper, "save_pretrained", None) is None
    assert log.events == []  # hasattr/getattr with a default expect the miss
    assert wrapper.model.layer.out_features == 2  # other lookups still work
    assert type(wrapper.model).__getattr__ is nn.Module.__getattr__  # the inner modules are untouched
    for _ in range(2):
        try:
            wrapper.save_pretrained("out")
        except AttributeError as exc:
            assert str(exc) == "'Wrapper' object has no attribute 'save_pretrained'"  # the script sees the same error
    assert len(log.events) == 1  # once per class and place
    event = log.events[0]
    assert event["kind"] == "missing_save" and event["class"].endswith("Wrapper")
    assert event["error"] == "AttributeError: 'Wrapper' object has no attribute 'save_pretrained'"
    assert event["where"].startswith(__file__ + ":")


def test_models_with_a_save_pretrained_or_their_own_getattr_keep_working():
    from lora_codemod.smoke.child.instrument import watch_missing_save

    class Saves(nn.Module):
        def save_pretrained(self, directory):
            return directory

    class Forwards(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(2, 3)

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.inner, name)

    log = _Log()
    saves, forwards = Saves(), Forwards()
    watch_missing_save(log, saves)
    watch_missing_save(log, forwards)
    watch_missing_save(log, forwards)  # twice: wrapped once
    assert "__getattr__" not in Saves.__dict__
    assert saves.save_pretrained("d") == "d"
    assert forwards.out_features == 3  # its own forwarding still runs
    with pytest.raises(AttributeError):
        forwards.save_pretrained("d")
    assert [e["class"].rsplit(".", 1)[-1] for e in log.events] == ["Forwards"]


def test_unsafe_fixes_reach_the_rewrite(monkeypatch, tmp_path):
    import lora_codemod.engine
    from lora_codemod.findings import SourceError, SourceResult

    seen = []

    def transform(source, path="<stdin>", config=None):
        seen.append(config.unsafe_fixes)
        return SourceResult(path=path, source=source, output=source, error=SourceError(path, "stop here"))

    monkeypatch.setattr(lora_codemod.engine, "transform_source", transform)
    script = FIXTURE_SCRIPTS / SINGLE
    for flags in ([], ["--unsafe-fixes"]):
        code, _, _ = run_cli(commands.smoke, [str(script), "--device", "cpu", *flags])
        assert code == 2
    assert seen == [False, True]
    code, _, stderr = run_cli(commands.smoke, [str(script), "--no-fix", "--unsafe-fixes"])
    assert code == 2 and stderr.strip() == "error: --no-fix and --unsafe-fixes exclude each other (nothing is patched)"
