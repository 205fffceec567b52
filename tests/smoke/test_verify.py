"""`verify` on adapter directories these tests build: real PEFT saves and hand-made broken ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from lora_codemod.smoke.commands import verify
from lora_codemod.smoke.child.verify import (
    FAIL,
    FULL_MODEL_MESSAGE,
    PASS,
    WARN,
    verify_adapter_dir,
)

from .conftest import run_cli


def _peft_model(tiny_model: Path, r: int = 4):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    config = LoraConfig(r=r, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    return get_peft_model(base, config)


@pytest.fixture(scope="module")
def adapters(tiny_model, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    model = _peft_model(tiny_model)
    model.save_pretrained(root / "untrained")  # lora_B is all zeros right after get_peft_model
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)  # what an optimizer step does to lora_B
    model.save_pretrained(root / "trained")
    model.save_pretrained(root / "trained_bin", safe_serialization=False)
    return {"root": root, "untrained": root / "untrained", "trained": root / "trained", "bin": root / "trained_bin"}


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _statuses(result) -> dict[str, str]:
    return {c.name: c.status for c in result.checks}


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(directory / "adapter_model.safetensors")


def test_trained_adapter_passes_every_check(adapters):
    result = verify_adapter_dir(adapters["trained"])
    assert result.status == PASS, [c for c in result.checks if c.status != PASS]
    assert result.holds == "adapter"
    statuses = _statuses(result)
    for name in ("adapter_config.json", "adapter weights", "LoRA tensors", "non-empty tensors", "shapes match r", "lora_B trained"):
        assert statuses[name] == PASS
    figures = {c.name: c.figure for c in result.checks}
    assert figures["LoRA tensors"] == "4 lora_A, 4 lora_B"  # 2 layers x (q_proj, v_proj)
    assert "r=4" in figures["adapter_config.json"]


def test_bin_adapter_loads_with_torch_load(adapters):
    assert (adapters["bin"] / "adapter_model.bin").exists()
    result = verify_adapter_dir(adapters["bin"])
    assert result.status == PASS
    assert "adapter_model.bin loads" in {c.detail for c in result.checks}


def test_untrained_adapter_is_a_warning_not_a_failure(adapters):
    result = verify_adapter_dir(adapters["untrained"])
    assert result.status == WARN
    assert result.exit_code == 0
    trained = next(c for c in result.checks if c.name == "lora_B trained")
    assert trained.status == WARN and trained.figure == "4 of 4 all-zero"


def test_empty_safetensors_fails(adapters, tmp_path):
    directory = _copy(adapters["trained"], tmp_path / "empty")
    save_file({}, directory / "adapter_model.safetensors", metadata={"format": "pt"})
    assert (directory / "adapter_model.safetensors").stat().st_size == 40  # the ZeRO-3 symptom on disk
    result = verify_adapter_dir(directory)
    assert result.status == FAIL
    failure = result.first_failure()
    assert failure.name == "adapter weights" and "holds no tensors" in failure.detail


def test_zero_byte_weights_file_fails(adapters, tmp_path):
    directory = _copy(adapters["trained"], tmp_path / "zero")
    (directory / "adapter_model.safetensors").write_bytes(b"")
    failure = verify_adapter_dir(directory).first_failure()
    assert failure.name == "adapter weights" and "is empty" in failure.detail


def test_zero_element_tensors_fail(adapters, tmp_path):
    directory = _copy(adapters["trained"], tmp_path / "gathered_nothing")
    tensors = _weights(directory)
    # What a rank saves from ZeRO-3/FSDP shards without gathering: tensors with no elements.
    tensors = {key: (torch.empty(0) if "lora_" in key else value) for key, value in tensors.items()}
    save_file(tensors, directory / "adapter_model.safetensors", metadata={"format": "pt"})
    result = verify_adapter_dir(directory)
    failure = result.first_failure()
    assert failure.name == "non-empty tensors"
    assert failure.figure == "8 of 8 empty"


def test_shapes_inconsistent_with_r_fail(adapters, tmp_path):
    directory = _copy(adapters["trained"], tmp_path / "wrong_r")
    config = json.loads((directory / "adapter_config.json").read_text())
    config["r"] = 8  # the tensors were saved with r=4
    (directory / "adapter_config.json").write_text(json.dumps(config))
    failure = verify_adapter_dir(directory).first_failure()
    assert failure.name == "shapes match r" and "(r=8)" in failure.detail


def test_full_model_is_reported_as_the_base_model_saved(tiny_model, tmp_path):
    # What `model.save_pretrained` writes when `model` is the base that get_peft_model modified.
    model = _peft_model(tiny_model)
    model.base_model.model.save_pretrained(tmp_path / "full")
    result = verify_adapter_dir(tmp_path / "full")
    assert result.holds == "full model"
    failure = result.first_failure()
    assert failure.detail == FULL_MODEL_MESSAGE
    assert "8 LoRA tensors inside" in failure.figure


def test_missing_adapter_config_fails(adapters, tmp_path):
    directory = _copy(adapters["trained"], tmp_path / "no_config")
    (directory / "adapter_config.json").unlink()
    failure = verify_adapter_dir(directory).first_failure()
    assert failure.name == "adapter_config.json" and failure.detail == "adapter_config.json missing"


def test_named_adapter_in_subdirectory_is_pointed_out(adapters, tmp_path):
    directory = tmp_path / "named"
    shutil.copytree(adapters["trained"], directory / "my_adapter")
    result = verify_adapter_dir(directory)
    assert result.first_failure() is None  # not "missing": verified where PEFT put it
    location = next(c for c in result.checks if c.name == "adapter location")
    assert location.status == WARN and f"load it from {directory / 'my_adapter'}" in location.detail


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c.update(r=0), "r must be a positive integer"),
        (lambda c: c.update(peft_type="PREFIX_TUNING"), "not a LoRA-family type"),
        (lambda c: c.update(target_modules=[]), "no target_modules"),
    ],
    ids=["r=0", "prefix-tuning", "no-targets"],
)
def test_bad_adapter_config_fails(adapters, tmp_path, edit, expected):
    directory = _copy(adapters["trained"], tmp_path / "bad_config")
    config = json.loads((directory / "adapter_config.json").read_text())
    edit(config)
    (directory / "adapter_config.json").write_text(json.dumps(config))
    failure = verify_adapter_dir(directory).first_failure()
    assert failure.name == "adapter_config.json" and expected in failure.detail


def test_unparsable_adapter_config_fails(adapters, tmp_path):
    directory = _copy(adapters["trained"], tmp_path / "garbled")
    (directory / "adapter_config.json").write_text("{not json")
    failure = verify_adapter_dir(directory).first_failure()
    assert "does not parse" in failure.detail


def test_torch_compile_prefix_fails(adapters, tmp_path):
    directory = _copy(adapters["trained"], tmp_path / "compiled")
    tensors = {key.replace("base_model.model.", "base_model.model._orig_mod.", 1): v for key, v in _weights(directory).items()}
    save_file(tensors, directory / "adapter_model.safetensors", metadata={"format": "pt"})
    failure = verify_adapter_dir(directory).first_failure()
    assert failure.name == "no torch.compile prefix"
    assert "e.g. base_model.model._orig_mod.model.layers.0.self_attn.q_proj.lora_A.weight" in failure.detail


def test_cli_exit_codes_and_json(adapters, tiny_model, tmp_path):
    code, parsed, _ = run_cli(verify, [str(adapters["trained"]), "--json"])
    assert code == 0 and parsed["status"] == PASS
    code, parsed, _ = run_cli(verify, [str(adapters["untrained"]), "--json"])
    assert code == 0 and parsed["status"] == WARN
    code, parsed, _ = run_cli(verify, [str(tiny_model), "--json"])
    assert code == 1 and parsed["holds"] == "full model"
    code, _, stderr = run_cli(verify, [str(tmp_path / "missing")])
    assert code == 2 and "no such directory" in stderr


def test_cli_table_names_the_checks(adapters):
    result = CliRunner().invoke(verify, [str(adapters["trained"])])
    assert result.exit_code == 0
    for text in ("adapter_config.json", "lora_B trained", "4 lora_A, 4 lora_B", "PASS"):
        assert text in result.stdout


def test_base_model_forward_pass(adapters, tiny_model):
    result = verify_adapter_dir(adapters["trained"], base_model=str(tiny_model))
    on_base = next(c for c in result.checks if c.name == "loads on base model")
    assert on_base.status == PASS, on_base
    assert on_base.figure.startswith("max |Δ|")


def test_base_model_that_does_not_match_fails(adapters, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    # Same module names, other shapes: the adapter cannot be loaded onto it.
    other = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1))
    other.save_pretrained(tmp_path / "other_base")
    result = verify_adapter_dir(adapters["trained"], base_model=str(tmp_path / "other_base"))
    on_base = next(c for c in result.checks if c.name == "loads on base model")
    assert on_base.status == FAIL
