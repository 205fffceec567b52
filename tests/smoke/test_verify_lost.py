"""`verify` on adapters lost in the ways issue 10 lists: each built from a real PEFT save of a tiny
model, then broken the way the failure breaks it, and checked against the unbroken control."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lora_codemod.smoke.commands import verify
from lora_codemod.smoke.child.verify import FAIL, PASS, WARN, verify_adapter_dir

from .conftest import run_cli

TARGETS = ["q_proj", "v_proj"]


def _peft_model(base_dir: Path, seed: int = 0, **lora):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, task_type="CAUSAL_LM", **lora)
    return get_peft_model(base, config)


def _train(model, seed: int = 1) -> None:
    """What optimizer steps do to lora_B: move it off its initial value."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    model = _peft_model(tiny_model)
    _train(model)
    directory = tmp_path_factory.mktemp("lost") / "trained"
    model.save_pretrained(directory)
    return model, directory


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _row(result, name: str):
    rows = [c for c in result.checks if c.name == name]
    assert rows, f"no {name!r} row; rows: {[(c.name, c.status) for c in result.checks]}"
    return rows[0]


def _lora_keys_of(state: dict) -> dict:
    """A hand-written adapter save: the LoRA tensors of a state dict, adapter name dropped (PEFT's key form)."""
    return {k.replace(".default", ""): v.detach().clone().contiguous() for k, v in state.items() if "lora_" in k}


# ------------------------------------------------------------------ key prefixes


def _fsdp_state(model) -> dict:
    # FSDP1 with a decoder-layer auto-wrap policy names every parameter through the root wrapper and
    # the layer's own wrapper: _fsdp_wrapped_module.<...>.layers.0._fsdp_wrapped_module.self_attn...
    state = {}
    for key, value in model.state_dict().items():
        key = "_fsdp_wrapped_module." + key
        state[key.replace(".layers.0.", ".layers.0._fsdp_wrapped_module.").replace(
            ".layers.1.", ".layers.1._fsdp_wrapped_module.")] = value
    return state


WRAPPERS = {
    "torch.compile": (lambda m: torch.compile(m).state_dict(), "no torch.compile prefix", "'_orig_mod.'",
                      "_orig_mod.base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"),
    # DataParallel gives the same 'module.' prefix as DistributedDataParallel and needs no process group.
    "DDP": (lambda m: torch.nn.DataParallel(m).state_dict(), "no DDP prefix", "'module.'",
            "module.base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"),
    "FSDP": (_fsdp_state, "no FSDP prefix", "'_fsdp_wrapped_module.'",
             "_fsdp_wrapped_module.base_model.model.model.layers.0._fsdp_wrapped_module.self_attn.q_proj.lora_A.weight"),
}


@pytest.mark.parametrize("wrapper", list(WRAPPERS))
def test_wrapper_prefix_fails_with_the_first_key(trained, tmp_path, wrapper):
    model, source = trained
    state_of, row, prefix, first_key = WRAPPERS[wrapper]
    directory = _copy(source, tmp_path / wrapper)
    tensors = _lora_keys_of(state_of(model))
    save_file(tensors, directory / "adapter_model.safetensors", metadata={"format": "pt"})

    result = verify_adapter_dir(directory)
    check = _row(result, row)
    assert check.status == FAIL and result.first_failure() == check
    assert prefix in check.detail
    assert f"e.g. {first_key}:" in check.detail
    assert check.figure == "8 of 8 keys"
    assert "no wrapper prefixes" not in {c.name for c in result.checks}


@pytest.mark.parametrize("wrapper", list(WRAPPERS))
def test_prefixed_keys_really_load_as_a_no_op(trained, tiny_model, tmp_path, wrapper):
    # What the message claims, shown with peft itself: the prefixed keys match nothing on load.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, source = trained
    directory = _copy(source, tmp_path / wrapper)
    save_file(_lora_keys_of(WRAPPERS[wrapper][0](model)), directory / "adapter_model.safetensors",
              metadata={"format": "pt"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(directory))
    assert any("missing" in str(w.message).lower() for w in caught)
    assert all(not p.any() for n, p in loaded.named_parameters() if "lora_B" in n)


def test_full_state_dict_saved_as_the_adapter_fails_on_base_layer(trained, tmp_path):
    model, source = trained
    directory = _copy(source, tmp_path / "full_state")
    (directory / "adapter_model.safetensors").unlink()
    torch.save(model.state_dict(), directory / "adapter_model.bin")  # the PEFT model's whole state dict

    result = verify_adapter_dir(directory)
    check = _row(result, "no base_layer weights")
    assert check.status == FAIL
    assert "e.g. base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight:" in check.detail
    assert check.figure.startswith("4 of ")  # q_proj and v_proj in 2 layers


def test_clean_adapter_has_no_prefix_rows(trained):
    result = verify_adapter_dir(trained[1])
    assert _row(result, "no wrapper prefixes").status == PASS
    assert result.status == PASS


# ------------------------------------------------------------------ 1/N of lora_B's rows


@pytest.mark.parametrize("shards", [2, 4, 8])
def test_lora_b_trained_in_one_shard_of_its_rows_warns(trained, tmp_path, shards):
    _, source = trained
    directory = _copy(source, tmp_path / f"shard{shards}")
    tensors = load_file(directory / "adapter_model.safetensors")
    for key, value in tensors.items():
        if "lora_B" in key:
            kept = value.shape[0] // shards  # rank 0's shard of the rows, the rest never written
            value[kept:] = 0
    save_file(tensors, directory / "adapter_model.safetensors", metadata={"format": "pt"})

    result = verify_adapter_dir(directory)
    check = _row(result, "lora_B rows trained")
    assert check.status == WARN and result.exit_code == 0
    rows = 32 // shards  # q_proj and v_proj of the tiny model both have 32 output rows
    assert f"only about 1/{shards} of their rows" in check.detail
    assert f"{rows} of 32 rows" in check.detail and "rank 0's shard" in check.detail
    assert check.figure == f"{rows}/32 = {rows / 32:.3f} of rows"


def test_fully_trained_lora_b_rows_pass(trained):
    check = _row(verify_adapter_dir(trained[1]), "lora_B rows trained")
    assert check.status == PASS and check.figure == "4 lora_B"


def test_untrained_lora_b_is_not_reported_as_a_shard(tiny_model, tmp_path):
    _peft_model(tiny_model).save_pretrained(tmp_path / "zero")
    result = verify_adapter_dir(tmp_path / "zero")
    assert "lora_B rows trained" not in {c.name for c in result.checks}
    assert _row(result, "lora_B trained").status == WARN


# ------------------------------------------------------------------ added tokens


@pytest.fixture(scope="module")
def added_tokens(tiny_model, tmp_path_factory):
    """A model trained after tokenizer.add_tokens + resize_token_embeddings, saved with and without embeddings."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("added")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    base_vocab = len(tokenizer)
    tokenizer.add_tokens(["<tool>", "</tool>", "<think>"])
    model = _peft_model(tiny_model)
    model.base_model.model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    _train(model)
    # The save that loses them: embeddings not saved (what "auto" also does when it cannot read the base config).
    model.save_pretrained(root / "lost", save_embedding_layers=False)
    tokenizer.save_pretrained(root / "lost")
    # The control: the default ("auto") sees the vocabulary changed and saves embed_tokens and lm_head.
    model.save_pretrained(root / "kept")
    tokenizer.save_pretrained(root / "kept")
    return root, base_vocab, len(tokenizer)


def test_added_tokens_without_embeddings_fail_with_both_sizes(added_tokens):
    root, base_vocab, tokens = added_tokens
    result = verify_adapter_dir(root / "lost")
    check = _row(result, "added tokens saved")
    assert check.status == FAIL and result.first_failure() == check
    assert f"has {tokens} tokens" in check.detail and f"vocabulary of {base_vocab}" in check.detail
    assert f"ids {base_vocab} and up are out of range" in check.detail and "save_embedding_layers=True" in check.detail
    assert check.figure == f"{tokens} tokens, base vocabulary {base_vocab}"


def test_lost_embeddings_really_break_the_added_tokens(added_tokens, tiny_model):
    # What the message claims, shown with peft: the adapter loads, and an added token's id is out of range.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, base_vocab, _ = added_tokens
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(root / "lost"))
    ids = AutoTokenizer.from_pretrained(root / "lost")("<tool>", add_special_tokens=False, return_tensors="pt").input_ids
    assert int(ids.max()) >= base_vocab
    with pytest.raises(IndexError, match="index out of range"):
        loaded(ids)


def test_added_tokens_with_saved_embeddings_pass(added_tokens):
    root, _, _ = added_tokens
    check = _row(verify_adapter_dir(root / "kept"), "added tokens saved")
    assert check.status == PASS
    assert "adapter holds the resized embeddings" in check.detail and ("embed_tokens" in check.detail or "lm_head" in check.detail)


def test_added_tokens_counted_from_tokenizer_config_alone(added_tokens, tmp_path):
    # Older transformers list added tokens in tokenizer_config.json's added_tokens_decoder.
    root, base_vocab, tokens = added_tokens
    directory = _copy(root / "lost", tmp_path / "config_only")
    (directory / "tokenizer.json").unlink()
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"] = {str(i): {"content": f"<t{i}>", "special": False} for i in range(base_vocab, tokens)}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    check = _row(verify_adapter_dir(directory), "added tokens saved")
    assert check.status == FAIL and f"(tokenizer_config.json) has {tokens} tokens" in check.detail


def test_base_vocabulary_from_base_model_option(added_tokens, tiny_model, tmp_path):
    root, base_vocab, _ = added_tokens
    directory = _copy(root / "lost", tmp_path / "no_base_name")
    config = json.loads((directory / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = None  # a model built from a config
    (directory / "adapter_config.json").write_text(json.dumps(config))
    assert "added tokens saved" not in {c.name for c in verify_adapter_dir(directory).checks}  # nothing to compare with
    check = _row(verify_adapter_dir(directory, base_model=str(tiny_model)), "added tokens saved")
    assert check.status == FAIL and f"vocabulary of {base_vocab}" in check.detail


def test_tokenizer_within_the_base_vocabulary_passes(trained, tiny_model, tmp_path):
    from transformers import AutoTokenizer

    directory = _copy(trained[1], tmp_path / "same_vocab")
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(directory)
    check = _row(verify_adapter_dir(directory), "added tokens saved")
    assert check.status == PASS and "fits the base vocabulary" in check.detail


# ------------------------------------------------------------------ a named adapter


def test_named_adapter_is_verified_where_peft_saved_it(tiny_model, tmp_path):
    from peft import LoraConfig

    model = _peft_model(tiny_model)
    model.add_adapter("code", LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, task_type="CAUSAL_LM"))
    model.set_adapter("code")
    _train(model)
    model.save_pretrained(tmp_path / "out", selected_adapters=["code"])  # PEFT writes out/code/
    assert not (tmp_path / "out" / "adapter_config.json").exists()

    result = verify_adapter_dir(tmp_path / "out")
    location = _row(result, "adapter location")
    assert location.status == WARN
    assert f"load it from {tmp_path / 'out' / 'code'}" in location.detail and "named 'code'" in location.detail
    assert "missing" not in " ".join(c.detail for c in result.checks)
    assert result.holds == "adapter" and result.load_from == str(tmp_path / "out" / "code")
    assert result.status == WARN and _row(result, "lora_B trained").status == PASS

    code, parsed, _ = run_cli(verify, [str(tmp_path / "out"), "--json"])
    assert code == 0 and parsed["load_from"] == str(tmp_path / "out" / "code")


def test_several_named_adapters_name_the_others(trained, tmp_path):
    _copy(trained[1], tmp_path / "two" / "alpha")
    _copy(trained[1], tmp_path / "two" / "beta")
    location = _row(verify_adapter_dir(tmp_path / "two"), "adapter location")
    assert "named 'alpha'" in location.detail and "other adapter(s) here: beta" in location.detail


# ------------------------------------------------------------------ untrained, against the base model


def test_untrained_default_init_fails_on_base(tiny_model, tmp_path):
    _peft_model(tiny_model).save_pretrained(tmp_path / "untrained")
    result = verify_adapter_dir(tmp_path / "untrained", base_model=str(tiny_model))
    check = _row(result, "lora_B moved from init")
    assert check.status == FAIL and check.detail.startswith("untrained:") and check.figure == "4 of 4 at init"
    assert _row(result, "loads on base model").status == WARN  # loads, changes no output


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_untrained_base_derived_init_fails_on_base_though_lora_b_is_not_zero(tiny_model, tmp_path, init):
    # PiSSA (SVD) and OLoRA (QR) start lora_B from the base weights: the zero test cannot see it never trained.
    _peft_model(tiny_model, init_lora_weights=init).save_pretrained(tmp_path / init)
    assert _row(verify_adapter_dir(tmp_path / init), "lora_B trained").status == PASS
    check = _row(verify_adapter_dir(tmp_path / init, base_model=str(tiny_model)), "lora_B moved from init")
    assert check.status == FAIL and check.detail.startswith("untrained:")


def test_trained_adapter_moved_from_init(trained, tiny_model):
    result = verify_adapter_dir(trained[1], base_model=str(tiny_model))
    assert _row(result, "lora_B moved from init").status == PASS
    assert _row(result, "loads on base model").status == PASS


def test_partly_untrained_adapter_warns(trained, tiny_model, tmp_path):
    directory = _copy(trained[1], tmp_path / "partly")
    tensors = load_file(directory / "adapter_model.safetensors")
    key = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"
    tensors[key] = torch.zeros_like(tensors[key])
    save_file(tensors, directory / "adapter_model.safetensors", metadata={"format": "pt"})
    check = _row(verify_adapter_dir(directory, base_model=str(tiny_model)), "lora_B moved from init")
    assert check.status == WARN and check.figure == "1 of 4 at init"


def test_random_init_is_not_judged(tiny_model, tmp_path):
    _peft_model(tiny_model, init_lora_weights=False).save_pretrained(tmp_path / "random")
    result = verify_adapter_dir(tmp_path / "random", base_model=str(tiny_model))
    assert "lora_B moved from init" not in {c.name for c in result.checks}
    assert "cannot be told from the base" in _row(result, "loads on base model").detail


def test_json_output_is_json_alone_with_base_model(tiny_model, tmp_path):
    _peft_model(tiny_model).save_pretrained(tmp_path / "untrained")
    code, parsed, _ = run_cli(verify, [str(tmp_path / "untrained"), "--base-model", str(tiny_model), "--json"])
    assert code == 1 and parsed["status"] == FAIL
    assert {c["name"]: c["status"] for c in parsed["checks"]}["lora_B moved from init"] == FAIL


def test_a_wrappers_own_module_attribute_is_not_the_ddp_prefix(trained, tmp_path):
    # LoRA on a plain nn.Module wrapper that keeps its model in `self.module`: a real module path.
    _, source = trained
    directory = _copy(source, tmp_path / "wrapper_attribute")
    tensors = {k.replace("base_model.model.", "base_model.model.module.", 1): v
               for k, v in load_file(directory / "adapter_model.safetensors").items()}
    save_file(tensors, directory / "adapter_model.safetensors", metadata={"format": "pt"})
    result = verify_adapter_dir(directory)
    assert "no DDP prefix" not in {c.name for c in result.checks}
    assert _row(result, "no wrapper prefixes").status == PASS


def test_init_that_cannot_be_rebuilt_is_said_on_the_load_row(trained, tiny_model, monkeypatch):
    from lora_codemod.smoke.child import verify_checks

    def no_init(*args, **kwargs):
        raise ValueError("unsupported init")

    monkeypatch.setattr(verify_checks, "initial_lora_b", no_init)
    result = verify_adapter_dir(trained[1], base_model=str(tiny_model))
    assert "lora_B moved from init" not in {c.name for c in result.checks}
    load = _row(result, "loads on base model")
    assert load.status == PASS and "initial value could not be rebuilt (ValueError: unsupported init)" in load.detail
