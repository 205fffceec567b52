"""Shims installed in the child: fallbacks for what cannot run here, the step cap, no trackers, no
hub uploads, training records.

Every shim that changes what the script asked for records a `standin` event (once per kind of
change), so the report is honest about what ran. What a run can use follows what is installed
and the device, not the device alone: flash-attn, bitsandbytes and DeepSpeed run for real when
installed and a GPU is used; when one is missing, the same stand-in as on the CPU is used (listed
as "not installed"). CPU placement shims are installed only for `--device cpu`, the GPU-sharing
shims only when ranks share GPUs; the step cap, tracker and upload shims always.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import math
import os
import sys
import types

FORCE_BACKEND_ENV = "LORA_CODEMOD_SMOKE_FORCE_BACKEND"  # the backend every rank must use (instrument forces it)

SETTINGS: dict = {}
_HALF = ("bfloat16", "float16", "half", "bf16", "fp16")


def cpu() -> bool:
    return bool(SETTINGS.get("cpu"))


def sharing_gpus() -> bool:
    """More ranks than GPUs: each rank sees one GPU (the bootstrap set CUDA_VISIBLE_DEVICES)."""
    return bool(SETTINGS.get("share_gpus")) and not cpu()


_installed: dict[str, bool] = {}


def installed(module: str) -> bool:
    """Whether a package can be imported here (found, not imported; the flash-attn stand-in does not count)."""
    if module not in _installed:
        loaded = sys.modules.get(module)
        if loaded is not None:
            _installed[module] = not isinstance(loaded, _StandInModule)
        else:
            stand_ins = [f for f in sys.meta_path if isinstance(f, FlashAttnImport)]
            for finder in stand_ins:
                sys.meta_path.remove(finder)
            try:
                _installed[module] = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                _installed[module] = False
            finally:
                sys.meta_path.extend(stand_ins)
    return _installed[module]


# What each optional package is called in the report, by its import name.
PACKAGES = {"flash_attn": "flash-attn", "bitsandbytes": "bitsandbytes", "deepspeed": "DeepSpeed"}


def unavailable(module: str) -> tuple[str, str] | None:
    """Why the real `module` cannot be used in this run, as (stand-in kind, reason), or None: use it."""
    name = PACKAGES.get(module, module)
    if not installed(module):
        return "missing", f"{name} is not installed"
    if cpu():
        return "cpu", f"{name} needs a GPU"
    return None


def gpu_supports(feature: str) -> bool:
    """bf16 or tf32 on the GPU this rank uses (always True when nothing can be asked)."""
    try:
        import torch

        if feature == "bf16":
            return bool(torch.cuda.is_bf16_supported())
        if feature == "tf32":
            return torch.cuda.get_device_capability() >= (8, 0)
    except Exception:
        return True
    return True


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


def _quantized(kwargs: dict) -> bool:
    config = kwargs.get("quantization_config")
    if kwargs.get("load_in_4bit") or kwargs.get("load_in_8bit"):
        return True
    if config is None:
        return False
    method = getattr(config, "quant_method", None) or (config.get("quant_method") if isinstance(config, dict) else None)
    # bitsandbytes configs only: other methods (GPTQ, AWQ, ...) are left to the libraries to refuse.
    return "bitsandbytes" in str(getattr(method, "value", method) or "bitsandbytes").lower()


def loader_kwargs(log, settings: dict, kwargs: dict) -> dict:
    """The keywords a model load really gets: quantization and flash attention only where their
    packages are installed and a GPU is used; on the CPU no device map and no half precision."""
    kwargs = dict(kwargs)
    if _quantized(kwargs):
        why = unavailable("bitsandbytes")
        if why:
            for key in ("quantization_config", "load_in_4bit", "load_in_8bit"):
                kwargs.pop(key, None)
            log.standin(why[0], f"4-bit/8-bit quantization dropped ({why[1]}): full-precision weights")
    if cpu():
        if any(kwargs.get(key) for key in ("quantization_config", "load_in_4bit", "load_in_8bit")):
            log.standin("cpu", "quantization_config dropped (its kernels need a GPU): full-precision weights")
        for key in ("quantization_config", "load_in_4bit", "load_in_8bit"):
            kwargs.pop(key, None)
    attention = kwargs.get("attn_implementation")
    flash = (isinstance(attention, str) and "flash" in attention) or bool(kwargs.get("use_flash_attention_2"))
    why = unavailable("flash_attn") if flash else None
    if why:
        shown = f"attn_implementation={attention!r}" if "attn_implementation" in kwargs else "use_flash_attention_2=True"
        kwargs.pop("attn_implementation", None)
        kwargs.pop("use_flash_attention_2", None)
        log.standin(why[0], f"{shown} -> the default attention ({why[1]})")
    if cpu():
        device_map = kwargs.pop("device_map", None)
        if device_map not in (None, "cpu", {"": "cpu"}):
            log.standin("cpu", f"device_map={device_map!r} -> CPU")
        for key in ("torch_dtype", "dtype"):
            value = kwargs.get(key)
            if value is not None and _dtype_name(value) in _HALF:
                import torch

                kwargs[key] = torch.float32
                log.standin("cpu", f"{key}={_dtype_name(value)} -> float32")
        return kwargs
    if sharing_gpus() and "device_map" in kwargs:
        kwargs["device_map"] = shared_device_map(log, kwargs["device_map"])
    for key in ("torch_dtype", "dtype"):
        value = kwargs.get(key)
        if value is not None and _dtype_name(value) in ("bfloat16", "bf16") and not gpu_supports("bf16"):
            import torch

            kwargs[key] = torch.float16
            log.standin("gpu", f"{key}=bfloat16 -> float16 (this GPU has no bf16)")
    return kwargs


# ---------------------------------------------------------------- ranks sharing GPUs


def shared_index(log, index: int) -> int:
    """A GPU index as a script computes it from LOCAL_RANK, on a rank that sees fewer GPUs."""
    import torch

    count = max(int(torch.cuda.device_count()), 1)
    mapped = index % count
    if mapped != index:
        log.standin("gpu", f"cuda:{index} -> cuda:{mapped} (ranks share the GPUs)")
    return mapped


def shared_device(log, value):
    """`value` (an index, "cuda:N", a torch.device) with its GPU index mapped onto this rank's GPU."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return shared_index(log, value)
    if isinstance(value, str):
        if value.startswith("cuda:") and value[5:].isdigit():
            return f"cuda:{shared_index(log, int(value[5:]))}"
        return value
    if _is_cuda(value) and isinstance(getattr(value, "index", None), int):
        import torch

        return torch.device("cuda", shared_index(log, value.index))
    return value


def shared_device_map(log, device_map):
    if isinstance(device_map, dict):
        return {k: shared_device(log, v) for k, v in device_map.items()}
    return shared_device(log, device_map)


def patch_torch_shared(log, torch) -> None:
    """Indexes from LOCAL_RANK (`.to(f"cuda:{rank}")`, `set_device(rank)`, DDP's `device_ids`)
    point past the one GPU a sharing rank sees: map them onto it."""
    if not sharing_gpus() or getattr(torch.nn.Module.to, "__lora_codemod_instrumented__", False):
        return
    module_to, tensor_to = torch.nn.Module.to, torch.Tensor.to
    module_cuda, tensor_cuda = torch.nn.Module.cuda, torch.Tensor.cuda
    set_device = torch.cuda.set_device

    def _args(args, kwargs):
        if args:
            args = (shared_device(log, args[0]), *args[1:])
        if "device" in kwargs:
            kwargs = {**kwargs, "device": shared_device(log, kwargs["device"])}
        return args, kwargs

    @functools.wraps(module_to)
    def to_module(self, *args, **kwargs):
        args, kwargs = _args(args, kwargs)
        return module_to(self, *args, **kwargs)

    @functools.wraps(tensor_to)
    def to_tensor(self, *args, **kwargs):
        if args or "device" in kwargs:
            args, kwargs = _args(args, kwargs)
        return tensor_to(self, *args, **kwargs)

    @functools.wraps(module_cuda)
    def cuda_module(self, device=None):
        return module_cuda(self, shared_device(log, device) if device is not None else None)

    @functools.wraps(tensor_cuda)
    def cuda_tensor(self, *args, **kwargs):
        args, kwargs = _args(args, kwargs)
        return tensor_cuda(self, *args, **kwargs)

    @functools.wraps(set_device)
    def shared_set_device(device):
        return set_device(shared_device(log, device))

    for function in (to_module, to_tensor, cuda_module, cuda_tensor, shared_set_device):
        function.__lora_codemod_instrumented__ = True
    torch.nn.Module.to, torch.Tensor.to = to_module, to_tensor
    torch.nn.Module.cuda, torch.Tensor.cuda = cuda_module, cuda_tensor
    torch.cuda.set_device = shared_set_device

    ddp = torch.nn.parallel.DistributedDataParallel
    original_init = ddp.__init__

    @functools.wraps(original_init)
    def ddp_init(self, module, device_ids=None, output_device=None, *args, **kwargs):
        if device_ids is not None:
            device_ids = [shared_device(log, d) for d in device_ids]
        if output_device is not None:
            output_device = shared_device(log, output_device)
        original_init(self, module, device_ids, output_device, *args, **kwargs)

    ddp_init.__lora_codemod_instrumented__ = True
    ddp.__init__ = ddp_init


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
        training_arguments(log, self)
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


def training_arguments(log, args) -> None:
    """Mixed precision, tf32, bitsandbytes optimizers, DeepSpeed and the DDP backend, as this run allows."""
    if cpu():
        for flag in ("bf16", "fp16", "bf16_full_eval", "fp16_full_eval"):
            if getattr(args, flag, False):
                setattr(args, flag, False)
                log.standin("cpu", f"{flag}=True -> False (no bf16/fp16 mixed precision on this CPU run)")
        if getattr(args, "tf32", None):
            args.tf32 = None
            log.standin("cpu", "tf32=True -> off")
    else:
        if not gpu_supports("bf16"):
            for flag, half in (("bf16", "fp16"), ("bf16_full_eval", "fp16_full_eval")):
                if getattr(args, flag, False):
                    setattr(args, flag, False)
                    setattr(args, half, True)
                    log.standin("gpu", f"{flag}=True -> {half}=True (this GPU has no bf16)")
        if getattr(args, "tf32", None) and not gpu_supports("tf32"):
            args.tf32 = None
            log.standin("gpu", "tf32=True -> off (this GPU has no TF32: it came with Ampere)")
    optim = str(getattr(args, "optim", "") or "")
    optim = getattr(getattr(args, "optim", None), "value", optim)
    if "bnb" in optim or "8bit" in optim or "paged" in optim:
        why = unavailable("bitsandbytes")
        if why:
            log.standin(why[0], f"optim={optim} -> adamw_torch ({why[1]})")
            args.optim = "adamw_torch"
    deepspeed = getattr(args, "deepspeed", None)
    if deepspeed:
        why = unavailable("deepspeed")
        if why is None and isinstance(deepspeed, (str, os.PathLike)) and not os.path.exists(deepspeed):
            why = ("file", "its config file is not there")
        if why:
            log.standin(why[0], f"deepspeed={deepspeed!r} -> off ({why[1]})")
            args.deepspeed = None
    forced = os.environ.get(FORCE_BACKEND_ENV) or None
    if forced and hasattr(args, "ddp_backend"):
        if args.ddp_backend not in (None, forced):
            log.standin("backend", f"ddp_backend={args.ddp_backend!r} -> {forced!r}")
        # accelerate would pick nccl for CUDA ranks (and refuse nccl on the CPU): the run's backend.
        args.ddp_backend = forced


# ---------------------------------------------------------------- downloads a stand-in cannot replace

DOWNLOADS = ("snapshot_download", "hf_hub_download")


def _called_from_a_library() -> bool:
    """Whether the download was asked for by one of PROBING_LIBRARIES (transformers fetching an
    optional file), not by the script or its own project."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    if frame is None:
        return False
    filename = frame.f_code.co_filename.replace("\\", "/")
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in filename:
            return filename.split(marker, 1)[1].split("/", 1)[0] in PROBING_LIBRARIES
    return False


def patch_hub_downloads(log, module) -> None:
    """`huggingface_hub.snapshot_download(name)` / `hf_hub_download(name, file)` called by the script
    or its project (an audio codec, a checkpoint of its own format): nothing can stand in for files
    of a format only that project knows, and nothing is downloaded. A failed call is listed (the
    report says whether the script went on without it), then raised as it would be."""
    for name in DOWNLOADS:
        original = getattr(module, name, None)
        if original is None or getattr(original, "__lora_codemod_instrumented__", False):
            continue

        def download(*args, __original=original, __name=name, **kwargs):
            try:
                return __original(*args, **kwargs)
            except Exception as exc:
                if not _called_from_a_library():
                    repo = args[0] if args else kwargs.get("repo_id")
                    what = f"{__name}({repo!r}" + (f", {args[1]!r})" if __name == "hf_hub_download" and len(args) > 1 else ")")
                    reason = str(exc).strip().splitlines()[0].split(". ", 1)[0][:160] if str(exc).strip() else ""
                    log.standin("download", f"{what} -> nothing downloaded and no stand-in for it: "
                                f"{type(exc).__name__}{': ' + reason if reason else ''}")
                raise

        download.__lora_codemod_instrumented__ = True
        functools.update_wrapper(download, original)
        setattr(module, name, download)


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
STANDIN_TEXT = ("import flash_attn -> a stand-in (flash-attn is not installed): its attention functions run as "
                "PyTorch attention, anything else fails when called")


class _Unavailable:
    """What every other name of the flash_attn stand-in is: importable, failing only when used."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            f"{type(self).__module__}.{type(self).__qualname__}: flash-attn is not installed; lora-codemod smoke "
            "stands in for its attention functions only (computed with PyTorch), not for this"
        )


class _StandInModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        # A class, so the name works as a function to call and as a base class to subclass.
        value = type(name, (_Unavailable,), {"__module__": self.__name__, "__qualname__": name})
        setattr(self, name, value)
        return value


# Libraries that probe for flash-attn as an optional dependency (transformers' is_flash_attn_2_available,
# torch inductor's flash_attn.cute check): to them it stays "not installed", which is the truth.
PROBING_LIBRARIES = ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "diffusers",
                     "huggingface_hub", "deepspeed", "bitsandbytes", "safetensors", "tokenizers", "xformers")


def _asked_by_a_library() -> bool:
    """Whether the import being resolved comes from one of PROBING_LIBRARIES (installed, not the
    script or its own project, an installed one included)."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename.replace("\\", "/")
        if not (filename.startswith("<frozen") or "/importlib/" in filename or filename == __file__):
            for marker in ("/site-packages/", "/dist-packages/"):
                if marker in filename:
                    top = filename.split(marker, 1)[1].split("/", 1)[0]
                    return top in PROBING_LIBRARIES
            return False
        frame = frame.f_back
    return False


class FlashAttnImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import flash_attn` (and its submodules) where flash-attn is not installed, on any device.

    Scripts written for GPUs import it at the top (FastChat's `llama_flash_attn_monkey_patch`,
    `from flash_attn import flash_attn_func`) even when the flag that would use it is off, and
    their patches call its attention functions. The stand-in makes the import succeed, computes
    those functions with PyTorch (flash_attn_torch), and every other name fails when used. Placed last on
    `sys.meta_path`, so an installed flash-attn always wins, and package metadata still says it
    is not installed, so transformers' `is_flash_attn_2_available()` stays False. The ML
    libraries themselves are not given it (PROBING_LIBRARIES): their availability probes find
    nothing, as without smoke, and only the script's use of it is listed under stand-ins.
    """

    def __init__(self, log):
        self.log = log

    def find_spec(self, fullname, path, target=None):
        if fullname != FLASH_ATTN and not fullname.startswith(FLASH_ATTN + "."):
            return None
        if _asked_by_a_library():
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        from lora_codemod.smoke.child import flash_attn_torch

        log = self.log
        flash_attn_torch.on_call = lambda name: log.standin(
            "missing", f"flash_attn {name}() -> PyTorch scaled_dot_product_attention")
        module = _StandInModule(spec.name)
        module.__path__ = []
        module.__dict__.update(flash_attn_torch.PROVIDED.get(spec.name, {}))
        if spec.name == FLASH_ATTN:
            module.__version__ = "0.0.0"
        return module

    def exec_module(self, module):
        self.log.standin("missing", STANDIN_TEXT)


def install_flash_attn_import(log) -> None:
    """On any device: a GPU machine without flash-attn is as common as a CPU one."""
    if any(isinstance(f, FlashAttnImport) for f in sys.meta_path):
        return
    if installed(FLASH_ATTN):
        return  # installed: the real one loads (on the CPU the loader shims keep it unused)
    sys.meta_path.append(FlashAttnImport(log))
