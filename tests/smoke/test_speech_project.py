"""The speech-LM fixture project (train-higgs-audio's shape), launched as its README launches it.

Its model is its own package's (`SpeechLMConfig`, with a text and an audio-encoder sub-config,
registered with AutoConfig; `SpeechLMModel` loaded by hub name with `config=`), its features come
from Whisper large-v3's processor by hub name, the model sits in a plain nn.Module wrapper and
gets LoRA through a setup function, and the audio tokenizer loader is hub-only (the script goes on
without it). Two runs: the README launch patched with --unsafe-fixes, and the torchrun launch
(--nproc 2, --bf16) under --compare, whose unpatched half is the control.
"""

from __future__ import annotations

import os
import shutil

import pytest

from lora_codemod.smoke.commands import smoke

from .conftest import FIXTURE_SCRIPTS, check, run_cli

PROJECT = FIXTURE_SCRIPTS / "speech_lm_project"
SCRIPT = "trainer/trainer.py"
HUB = "acme-audio/speech-lm-v2-3b-base"


def _launch(tmp_path_factory, name: str, *args: str) -> dict:
    project = tmp_path_factory.mktemp(name) / "speech_lm_project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    here = os.getcwd()
    os.chdir(project)  # launched from the project's directory, as its README says
    try:
        code, parsed, _ = run_cli(smoke, [SCRIPT, "--unsafe-fixes", "--device", "cpu", "--json", *args])
    finally:
        os.chdir(here)
    return {"code": code, "runs": parsed["runs"], "project": project}


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return _launch(tmp_path_factory, "single", "--", "--use_lora", "--train_data_dir", "sample_data")


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    return _launch(tmp_path_factory, "ddp", "--nproc", "2", "--compare", "--", "--model_path", "model_ckpt",
                   "--use_lora", "--bf16", "--train_data_dir", "sample_data")


def _explain(run: dict) -> str:
    return run["verdict"] + "\n" + "\n".join(run["output_tail"][-40:])


def _standins(run: dict) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in run["standins"]:
        found.setdefault(item["what"], []).append(item["detail"])
    return found


def test_readme_launch_passes_patched(single):
    run = single["runs"][0]
    assert run["status_code"] == 0, _explain(run)
    assert run["verdict"] == "PASS: a valid LoRA adapter in ./output/speech_lm/lora_adapters"
    assert [s["class"].rsplit(".", 1)[-1] for s in run["saves"] if s["api"] == "save_pretrained" and s["via"] is None] == [
        "PeftModelForCausalLM"]
    assert check(run, "training")["status"] == "pass"
    assert not (single["project"] / "output").exists()  # relative outputs land in the run's own directory


def test_readme_launch_lists_each_substitution_as_it_really_was(single):
    standins = _standins(single["runs"][0])
    assert standins["tokenizer"] == [
        f"{HUB} -> tiny speech_lm stand-in with speech_lm's special tokens (<|audio_bos|>, <|audio_eos|>, <|AUDIO|>, "
        "<|AUDIO_OUT|>) (the name spells a model type your code registered) (ChatML template)"]
    assert standins["config"] == [
        f"{HUB} -> tiny speech_lm stand-in: SpeechLMConfig's defaults, shrunk; 7 special-token ids mapped into the tiny "
        "vocabulary (asked for by SpeechLMConfig)"]  # AutoConfig.from_pretrained of the same name: the same stand-in
    assert len(standins["model"]) == 1 and standins["model"][0].startswith(f"{HUB} -> tiny SpeechLMModel (speech_lm, ")
    assert standins["processor"] == ["openai/whisper-large-v3 -> tiny whisper stand-in (128 mel bins, as large-v3 has)"]
    assert standins["download"] == [
        "snapshot_download('acme-audio/speech-lm-audio-tokenizer') -> nothing downloaded and no stand-in for it: "
        "LocalEntryNotFoundError: Cannot find an appropriate cached snapshot folder for the specified revision on the "
        "local disk and outgoing traffic has been disabled; the script caught the error and went on without it"]
    assert standins["tracker"] == ["report_to='tensorboard' -> none"]


def test_torchrun_launch_unpatched_loses_the_adapter_in_the_plain_wrapper(ddp):
    unpatched = ddp["runs"][0]
    assert unpatched["exit_code"] == 0 and unpatched["status_code"] == 1, _explain(unpatched)
    assert unpatched["verdict"].startswith("FAIL: adapter save ran: rank 0: SpeechLMModelWrapper.save_pretrained")
    assert "raised AttributeError: 'SpeechLMModelWrapper' object has no attribute 'save_pretrained'" in unpatched["verdict"]


def test_torchrun_launch_passes_patched_on_two_ranks(ddp):
    patched = ddp["runs"][1]
    assert patched["status_code"] == 0, _explain(patched)
    assert patched["verdict"] == "PASS: a valid LoRA adapter in ./output/speech_lm/lora_adapters, written by rank 0 alone"
    assert sorted(g["rank"] for g in patched["process_groups"]) == [0, 1]
    assert ddp["code"] == 0
    standins = {(item["what"], item["detail"]): item["ranks"] for item in patched["standins"]}
    # No name spells the model type here: the one type the project registered decides, on each rank.
    assert standins[("config", "model_ckpt -> tiny speech_lm stand-in: SpeechLMConfig's defaults, shrunk; 7 special-token "
                               "ids mapped into the tiny vocabulary (asked for by SpeechLMConfig)")] == [0, 1]
    assert standins[("tokenizer", "model_ckpt -> tiny speech_lm stand-in with speech_lm's special tokens (<|audio_bos|>, "
                                  "<|audio_eos|>, <|AUDIO|>, <|AUDIO_OUT|>) (the one model type your code registered with "
                                  "AutoConfig) (ChatML template)")] == [0, 1]
    assert standins[("cpu", "bf16=True -> False (no bf16/fp16 mixed precision on this CPU run)")] == [0, 1]
