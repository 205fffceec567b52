"""Stand-ins follow what is installed, not the device; mixed precision follows the GPU; ranks sharing
a GPU. Packages and GPUs are simulated (present and missing) in this process: no child runs here."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

from lora_codemod.smoke.child import shims
from lora_codemod.smoke.child.standins import StandIns, real_load_features


class Log:
    def __init__(self):
        self.standins = []
        self.rank = 0

    def standin(self, what, detail):
        if (what, detail) not in self.standins:
            self.standins.append((what, detail))


@pytest.fixture
def machine(monkeypatch):
    """machine(cpu=..., installed={...}, bf16=..., tf32=...): the facts the shims ask."""

    def set_up(cpu: bool, installed=(), bf16: bool = True, tf32: bool = True, **settings):
        monkeypatch.setattr(shims, "SETTINGS", {"cpu": cpu, **settings})
        monkeypatch.setattr(shims, "_installed", {m: m in installed for m in ("flash_attn", "bitsandbytes", "deepspeed")})
        monkeypatch.setattr(shims, "gpu_supports", lambda feature: {"bf16": bf16, "tf32": tf32}[feature])
        return Log()

    return set_up


LOAD = {"quantization_config": SimpleNamespace(quant_method="bitsandbytes"), "attn_implementation": "flash_attention_2",
        "device_map": {"": 0}, "torch_dtype": torch.bfloat16}


def test_missing_packages_get_the_cpu_stand_ins_on_a_gpu_too(machine):
    log = machine(cpu=False, installed=())
    kwargs = shims.loader_kwargs(log, {}, LOAD)
    assert "quantization_config" not in kwargs and "attn_implementation" not in kwargs
    assert kwargs["device_map"] == {"": 0} and kwargs["torch_dtype"] is torch.bfloat16  # a GPU run keeps these
    assert log.standins == [
        ("missing", "4-bit/8-bit quantization dropped (bitsandbytes is not installed): full-precision weights"),
        ("missing", "attn_implementation='flash_attention_2' -> the default attention (flash-attn is not installed)"),
    ]


def test_installed_packages_on_a_gpu_run_for_real(machine):
    log = machine(cpu=False, installed=("flash_attn", "bitsandbytes"))
    kwargs = shims.loader_kwargs(log, {}, LOAD)
    assert kwargs == LOAD and log.standins == []
    assert real_load_features(kwargs) == ["bitsandbytes quantization", "flash_attention_2"]


def test_installed_packages_on_the_cpu_still_need_a_gpu(machine):
    log = machine(cpu=True, installed=("flash_attn", "bitsandbytes"))
    kwargs = shims.loader_kwargs(log, {}, LOAD)
    assert kwargs == {"torch_dtype": torch.float32}
    assert ("cpu", "4-bit/8-bit quantization dropped (bitsandbytes needs a GPU): full-precision weights") in log.standins
    assert ("cpu", "attn_implementation='flash_attention_2' -> the default attention (flash-attn needs a GPU)") in log.standins
    assert real_load_features(kwargs) == []


def test_bf16_weights_become_fp16_on_a_gpu_without_bf16(machine):
    log = machine(cpu=False, installed=(), bf16=False)
    assert shims.loader_kwargs(log, {}, {"torch_dtype": torch.bfloat16})["torch_dtype"] is torch.float16
    assert log.standins == [("gpu", "torch_dtype=bfloat16 -> float16 (this GPU has no bf16)")]
    log = machine(cpu=False, installed=(), bf16=True)  # control: a GPU with bf16 keeps it
    assert shims.loader_kwargs(log, {}, {"dtype": torch.bfloat16})["dtype"] is torch.bfloat16 and log.standins == []


def _arguments(**values):
    fields = {"bf16": False, "fp16": False, "bf16_full_eval": False, "fp16_full_eval": False, "tf32": None,
              "optim": "adamw_torch", "deepspeed": None, "ddp_backend": None}
    return SimpleNamespace(**{**fields, **values})


def test_mixed_precision_follows_the_gpu(machine):
    log = machine(cpu=False, bf16=False, tf32=False)
    args = _arguments(bf16=True, bf16_full_eval=True, tf32=True)
    shims.training_arguments(log, args)
    assert (args.bf16, args.fp16, args.bf16_full_eval, args.fp16_full_eval, args.tf32) == (False, True, False, True, None)
    assert ("gpu", "bf16=True -> fp16=True (this GPU has no bf16)") in log.standins
    log = machine(cpu=False, bf16=True, tf32=True)  # control: bf16 stays where the GPU has it
    args = _arguments(bf16=True, tf32=True)
    shims.training_arguments(log, args)
    assert (args.bf16, args.fp16, args.tf32, log.standins) == (True, False, True, [])
    log = machine(cpu=True)
    args = _arguments(bf16=True, tf32=True)
    shims.training_arguments(log, args)
    assert (args.bf16, args.fp16, args.tf32) == (False, False, None)


@pytest.mark.parametrize("cpu, installed, exists, expected", [
    (False, (), False, ("missing", "deepspeed='ds.json' -> off (DeepSpeed is not installed)")),
    (True, ("deepspeed",), True, ("cpu", "deepspeed='ds.json' -> off (DeepSpeed needs a GPU)")),
    (False, ("deepspeed",), False, ("file", "deepspeed='ds.json' -> off (its config file is not there)")),
    (False, ("deepspeed",), True, None),  # installed, a GPU, a config: DeepSpeed runs
])
def test_deepspeed_by_availability(machine, tmp_path, monkeypatch, cpu, installed, exists, expected):
    monkeypatch.chdir(tmp_path)
    if exists:
        (tmp_path / "ds.json").write_text("{}")
    log = machine(cpu=cpu, installed=installed)
    args = _arguments(deepspeed="ds.json")
    shims.training_arguments(log, args)
    assert log.standins == ([expected] if expected else [])
    assert args.deepspeed == (None if expected else "ds.json")


@pytest.mark.parametrize("cpu, installed, expected", [
    (False, (), ("missing", "optim=paged_adamw_8bit -> adamw_torch (bitsandbytes is not installed)")),
    (True, ("bitsandbytes",), ("cpu", "optim=paged_adamw_8bit -> adamw_torch (bitsandbytes needs a GPU)")),
    (False, ("bitsandbytes",), None),
])
def test_bitsandbytes_optimizers_by_availability(machine, cpu, installed, expected):
    log = machine(cpu=cpu, installed=installed)
    args = _arguments(optim="paged_adamw_8bit")
    shims.training_arguments(log, args)
    assert log.standins == ([expected] if expected else [])
    assert args.optim == ("adamw_torch" if expected else "paged_adamw_8bit")


def test_the_run_backend_is_forced_on_ddp_backend(machine, monkeypatch):
    log = machine(cpu=False)
    monkeypatch.setenv(shims.FORCE_BACKEND_ENV, "gloo")
    args = _arguments(ddp_backend="nccl")
    shims.training_arguments(log, args)
    assert args.ddp_backend == "gloo" and log.standins == [("backend", "ddp_backend='nccl' -> 'gloo'")]
    args = _arguments()
    shims.training_arguments(log, args)
    assert args.ddp_backend == "gloo"  # accelerate would pick nccl for CUDA ranks
    monkeypatch.delenv(shims.FORCE_BACKEND_ENV)
    args = _arguments(ddp_backend="nccl")  # control: nothing forced, the script's choice stands
    shims.training_arguments(log, args)
    assert args.ddp_backend == "nccl"


def test_sharing_ranks_map_gpu_indexes_onto_their_one_gpu(machine, monkeypatch):
    log = machine(cpu=False, share_gpus={"visible": ["0"]})
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert shims.shared_device(log, 1) == 0
    assert shims.shared_device(log, "cuda:1") == "cuda:0"
    assert shims.shared_device(log, torch.device("cuda", 1)) == torch.device("cuda", 0)
    assert shims.shared_device_map(log, {"": 1, "lm_head": "cpu"}) == {"": 0, "lm_head": "cpu"}
    assert shims.shared_device(log, "cpu") == "cpu" and shims.shared_device(log, "cuda") == "cuda"
    assert log.standins == [("gpu", "cuda:1 -> cuda:0 (ranks share the GPUs)")]
    assert shims.loader_kwargs(log, {}, {"device_map": {"": 1}})["device_map"] == {"": 0}
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # control: an index that exists stays
    assert shims.shared_device(Log(), 1) == 1


def test_sharing_ranks_patch_placement_and_ddp_device_ids(machine, monkeypatch):
    log = machine(cpu=False, share_gpus={"visible": ["0"]})
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    calls = []

    def recorder(name):
        def call(*args, **kwargs):
            calls.append((name, args[1:] if name != "set_device" else args, kwargs))
        return call

    class DDP:
        def __init__(self, module, device_ids=None, output_device=None, **kwargs):
            calls.append(("ddp", device_ids, output_device))

    fake = SimpleNamespace(
        nn=SimpleNamespace(Module=type("Module", (), {"to": recorder("module.to"), "cuda": recorder("module.cuda")}),
                           parallel=SimpleNamespace(DistributedDataParallel=DDP)),
        Tensor=type("Tensor", (), {"to": recorder("tensor.to"), "cuda": recorder("tensor.cuda")}),
        cuda=SimpleNamespace(set_device=recorder("set_device")),
    )
    shims.patch_torch_shared(log, fake)
    fake.nn.Module().to("cuda:1")
    fake.Tensor().to(device=1)
    fake.cuda.set_device(1)
    fake.nn.parallel.DistributedDataParallel(object(), device_ids=[1], output_device=1)
    assert calls == [("module.to", ("cuda:0",), {}), ("tensor.to", (), {"device": 0}), ("set_device", (0,), {}),
                     ("ddp", [0], 0)]
    untouched = SimpleNamespace(nn=SimpleNamespace(Module=type("M", (), {"to": "original"})))
    machine(cpu=False)  # control: ranks that do not share are not patched
    shims.patch_torch_shared(Log(), untouched)
    assert untouched.nn.Module.to == "original"


def test_a_stand_in_model_loads_for_real_with_the_scripts_keywords(tmp_path, monkeypatch):
    from transformers import LlamaConfig, LlamaForCausalLM

    monkeypatch.setattr(shims, "SETTINGS", {"cpu": False})
    standins = StandIns(Log(), {"cache": str(tmp_path), "standins": True})
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2)
    loads = []

    def original(cls, path, **kwargs):  # from_pretrained as the script would call it, keywords and all
        loads.append((os.path.isfile(os.path.join(path, "model.safetensors")), sorted(kwargs)))
        return LlamaForCausalLM.from_pretrained(path)

    kwargs = {"config": config, "attn_implementation": "flash_attention_2", "device_map": None}
    model = standins.build_model(LlamaForCausalLM, "meta-llama/Llama-3.2-1B", kwargs, original)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert loads == [(True, ["attn_implementation", "device_map"])]
    assert "loaded with flash_attention_2" in standins.log.standins[-1][1]
    loads.clear()
    standins.build_model(LlamaForCausalLM, "meta-llama/Llama-3.2-1B", {"config": config}, original)
    assert loads == []  # control: nothing that needs a real load, the model is built in memory
