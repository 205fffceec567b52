"""Shims installed in the child: CPU fallbacks, the step cap, no trackers, no hub uploads, training records.

Every shim that changes what the script asked for records a `standin` event (once per kind of
change), so the report is honest about what ran. The CPU shims are installed only for
`--device cpu`; the step cap, tracker and upload shims always.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import math
import sys
import types

SETTINGS: dict = {}
_HALF = ("bfloat16", "float16", "half", "bf16", "fp16")


def cpu() -> bool:
    return bool(SETTINGS.get("cpu"))


def _is_cuda(value) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return True  # a bare device index means a GPU
    if isinstance(value, str):
        return value.startswith("cuda")
    device_type = getattr(value, "type", None)
    return isinstance(device_type, str) and device_type == "cuda" and type(value).__name__ == "device"


def _dtype_name(value) -> str:
    return str(value).replace("torch.", "")


# ---------------------------------------------------------------- from_pretrained keywords


def loader_kwargs(log, settings: dict, kwargs: dict) -> dict:
    """The keywords a model load really gets: CPU runs drop quantization, device maps, flash attention."""
    if not cpu():
        return kwargs
    kwargs = dict(kwargs)
    quantization = [k for k in ("quantization_config", "load_in_4bit", "load_in_8bit") if kwargs.get(k)]
    if quantization:
        for key in quantization:
            kwargs.pop(key, None)
        log.standin("cpu", "4-bit/8-bit quantization dropped (bitsandbytes needs a GPU): full-precision weights")
    for key in ("quantization_config", "load_in_4bit", "load_in_8bit"):
        kwargs.pop(key, None)
    device_map = kwargs.pop("device_map", None)
    if device_map not in (None, "cpu", {"": "cpu"}):
        log.standin("cpu", f"device_map={device_map!r} -> CPU")
    attention = kwargs.get("attn_implementation")
    if isinstance(attention, str) and "flash" in attention:
        kwargs.pop("attn_implementation")
        log.standin("cpu", f"attn_implementation={attention!r} -> the default attention")
    if kwargs.pop("use_flash_attention_2", None):
        log.standin("cpu", "use_flash_attention_2=True -> the default attention")
    for key in ("torch_dtype", "dtype"):
        value = kwargs.get(key)
        if value is not None and _dtype_name(value) in _HALF:
            import torch

            kwargs[key] = torch.float32
            log.standin("cpu", f"{key}={_dtype_name(value)} -> float32")
    return kwargs


def place_on_device(model, device_map) -> None:
    """A stand-in model honours a GPU device_map by moving there (CPU runs stay on the CPU)."""
    if cpu() or device_map is None:
        return
    if isinstance(device_map, dict) and "" in device_map:
        target = device_map[""]
        model.to(f"cuda:{target}" if isinstance(target, int) else target)
    elif device_map in ("auto", "cuda", "balanced", "sequential"):
        model.to("cuda")


# ---------------------------------------------------------------- torch: .cuda(), .to("cuda")


def patch_torch_cpu(log, torch) -> None:
    if not cpu() or getattr(torch.nn.Module.to, "__lora_codemod_instrumented__", False):
        return
    module_to, module_cuda = torch.nn.Module.to, torch.nn.Module.cuda
    tensor_to, tensor_cuda = torch.Tensor.to, torch.Tensor.cuda

    def _cpu_args(args, kwargs, what):
        if args and _is_cuda(args[0]):
            log.standin("cpu", f"{what}.to({args[0]!r}) -> CPU")
            args = ("cpu", *args[1:])
        if _is_cuda(kwargs.get("device")):
            log.standin("cpu", f"{what}.to(device={kwargs['device']!r}) -> CPU")
            kwargs = {**kwargs, "device": "cpu"}
        return args, kwargs

    @functools.wraps(module_to)
    def to_module(self, *args, **kwargs):
        args, kwargs = _cpu_args(args, kwargs, "model")
        return module_to(self, *args, **kwargs)

    @functools.wraps(module_cuda)
    def cuda_module(self, device=None):
        log.standin("cpu", "model.cuda() -> CPU")
        return self

    @functools.wraps(tensor_to)
    def to_tensor(self, *args, **kwargs):
        if args or "device" in kwargs:
            args, kwargs = _cpu_args(args, kwargs, "tensor")
        return tensor_to(self, *args, **kwargs)

    @functools.wraps(tensor_cuda)
    def cuda_tensor(self, *args, **kwargs):
        log.standin("cpu", "tensor.cuda() -> CPU")
        return self

    for function in (to_module, cuda_module, to_tensor, cuda_tensor):
        function.__lora_codemod_instrumented__ = True
    torch.nn.Module.to, torch.nn.Module.cuda = to_module, cuda_module
    torch.Tensor.to, torch.Tensor.cuda = to_tensor, cuda_tensor

    def set_device(*args, **kwargs):
        log.standin("cpu", "torch.cuda.set_device() -> ignored")

    torch.cuda.set_device = set_device


# ---------------------------------------------------------------- TrainingArguments


def patch_training_args(log, module) -> None:
    arguments = module.TrainingArguments
    original = arguments.__dict__.get("__post_init__")
    if original is None or getattr(original, "__lora_codemod_instrumented__", False):
        return

    @functools.wraps(original)
    def __post_init__(self):
        if cpu():
            for flag in ("bf16", "fp16", "bf16_full_eval", "fp16_full_eval"):
                if getattr(self, flag, False):
                    setattr(self, flag, False)
                    log.standin("cpu", f"{flag}=True -> False (no bf16/fp16 mixed precision on this CPU run)")
            if getattr(self, "tf32", None):
                self.tf32 = None
                log.standin("cpu", "tf32=True -> off")
            optim = str(getattr(self, "optim", "") or "")
            optim = getattr(getattr(self, "optim", None), "value", optim)
            if "bnb" in optim or "8bit" in optim or "paged" in optim:
                log.standin("cpu", f"optim={optim} -> adamw_torch (bitsandbytes needs a GPU)")
                self.optim = "adamw_torch"
            if getattr(self, "deepspeed", None):
                log.standin("cpu", f"deepspeed={self.deepspeed!r} -> off (no DeepSpeed on a CPU run)")
                self.deepspeed = None
        trackers = self.report_to
        if trackers not in (None, "none", [], ["none"], ("none",)) and trackers != "all":
            log.standin("tracker", f"report_to={trackers!r} -> none")
        self.report_to = "none"
        if getattr(self, "push_to_hub", False):
            log.standin("hub", "push_to_hub=True -> False (nothing is uploaded)")
            self.push_to_hub = False
        original(self)

    __post_init__.__lora_codemod_instrumented__ = True
    arguments.__post_init__ = __post_init__


# ---------------------------------------------------------------- uploads


def _neutralised(log, what: str):
    def no_upload(*args, **kwargs):
        log.standin("hub", f"{what} -> not uploaded")
        return None

    no_upload.__lora_codemod_instrumented__ = True
    return no_upload


def patch_push_to_hub_mixin(log, module) -> None:
    mixin = module.__dict__.get("PushToHubMixin")
    if mixin is not None and "push_to_hub" in mixin.__dict__:
        mixin.push_to_hub = _neutralised(log, "push_to_hub()")


def patch_hf_api(log, module) -> None:
    api_class = module.__dict__.get("HfApi")
    if api_class is None:
        return
    names = ("create_repo", "upload_folder", "upload_file", "create_commit", "upload_large_folder")
    for name in names:
        if name in api_class.__dict__:
            setattr(api_class, name, _neutralised(log, f"huggingface_hub {name}()"))
    default = module.__dict__.get("api")
    for name in names:
        if default is not None and name in module.__dict__ and hasattr(default, name):
            setattr(module, name, getattr(default, name))


# ---------------------------------------------------------------- Trainer: cap, evaluation, records


def _limited(dataset, rows: int):
    try:
        length = len(dataset)
    except Exception:
        return dataset
    if length <= rows:
        return dataset
    if hasattr(dataset, "select"):
        return dataset.select(range(rows))
    import torch

    return torch.utils.data.Subset(dataset, range(rows))


def trainer_setup(log, trainer) -> None:
    """After Trainer.__init__: the step cap, a bounded evaluation set, the training records."""
    from transformers.trainer_callback import TrainerCallback

    cap = SETTINGS.get("max_steps") or 0
    args = trainer.args
    if cap:
        if args.max_steps <= 0 or args.max_steps > cap:
            before = f"max_steps={args.max_steps}" if args.max_steps > 0 else f"num_train_epochs={args.num_train_epochs}"
            try:
                args.max_steps = cap
            except Exception:
                pass
            log.standin("steps", f"{before} -> {cap} steps (--max-steps)")
        rows = max(cap * int(getattr(args, "per_device_eval_batch_size", 8) or 8), 1)
        if isinstance(trainer.eval_dataset, dict):
            trainer.eval_dataset = {k: _limited(v, rows) for k, v in trainer.eval_dataset.items()}
        elif trainer.eval_dataset is not None:
            trainer.eval_dataset = _limited(trainer.eval_dataset, rows)

    class SmokeCallback(TrainerCallback):
        def __init__(self):
            self.initial = {}

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            log.phase(f"training 0/{state.max_steps}")
            self.initial = lora_snapshot(model)

        def on_step_end(self, args, state, control, **kwargs):
            log.phase(f"training {state.global_step}/{state.max_steps}")
            if cap and state.global_step >= cap:
                control.should_training_stop = True
                control.should_evaluate = False

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                value = logs["loss"]
                log.emit("loss", step=state.global_step, value=value if math.isfinite(value) else str(value))

        def on_train_end(self, args, state, control, model=None, **kwargs):
            log.phase("training done")
            changed, total = lora_changes(self.initial, model)
            log.emit("trained", steps=state.global_step, lora_tensors=total, lora_changed=changed,
                     losses=[h.get("loss") for h in state.log_history if "loss" in h])

    trainer.add_callback(SmokeCallback())


def lora_snapshot(model) -> dict:
    if model is None:
        return {}
    snapshot = {}
    for name, parameter in model.named_parameters():
        if "lora_" in name and parameter.numel():
            snapshot[name] = parameter.detach().float().cpu().clone()
    return snapshot


def lora_changes(initial: dict, model) -> tuple[int, int]:
    if not initial or model is None:
        return 0, 0
    import torch

    current = dict(model.named_parameters())
    changed = 0
    for name, before in initial.items():
        after = current.get(name)
        if after is not None and after.numel() == before.numel():
            if not torch.equal(after.detach().float().cpu(), before):
                changed += 1
    return changed, len(initial)


# ---------------------------------------------------------------- flash-attn: an import stand-in

FLASH_ATTN = "flash_attn"


class _Unavailable:
    """What every name of the flash_attn stand-in is: importable, failing only when used."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            f"{type(self).__module__}.{type(self).__qualname__}: flash-attn is not installed and its kernels need a GPU; "
            "lora-codemod smoke stands in for its import only (use the default attention on the CPU)"
        )


class _StandInModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        # A class, so the name works as a function to call and as a base class to subclass.
        value = type(name, (_Unavailable,), {"__module__": self.__name__, "__qualname__": name})
        setattr(self, name, value)
        return value


class FlashAttnImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import flash_attn` (and its submodules) on a CPU run where flash-attn is not installed.

    Scripts written for GPUs import it at the top (FastChat's `llama_flash_attn_monkey_patch`,
    `from flash_attn import flash_attn_func`) even when the flag that would use it is off. The
    stand-in makes the import succeed; every name in it fails when called. Placed last on
    `sys.meta_path`, so an installed flash-attn always wins, and package metadata still says it
    is not installed, so transformers' `is_flash_attn_2_available()` stays False.
    """

    def __init__(self, log):
        self.log = log

    def find_spec(self, fullname, path, target=None):
        if fullname != FLASH_ATTN and not fullname.startswith(FLASH_ATTN + "."):
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        module = _StandInModule(spec.name)
        module.__path__ = []
        if spec.name == FLASH_ATTN:
            module.__version__ = "0.0.0"
        return module

    def exec_module(self, module):
        self.log.standin("cpu", "import flash_attn -> an import stand-in (flash-attn is not installed; "
                                "calling it fails, the default attention runs)")


def install_flash_attn_import(log) -> None:
    if not cpu() or any(isinstance(f, FlashAttnImport) for f in sys.meta_path):
        return
    if FLASH_ATTN in sys.modules or importlib.util.find_spec(FLASH_ATTN) is not None:
        return  # installed: the real one loads (and the flash-attention shims keep it unused)
    sys.meta_path.append(FlashAttnImport(log))
