"""Instrumentation installed in the child process before the script runs.

Records every model save (`PreTrainedModel.save_pretrained`, `PeftModel.save_pretrained`,
`Trainer.save_model`) and the run's phases as JSON lines in a per-process file of the events
directory; the parent reads them for the live status line and the report.

Patches are applied right after the owning module is imported (an import hook), so a script pays
no extra import time and a script that never imports transformers is not touched.
"""

from __future__ import annotations

import functools
import importlib.abc
import inspect
import itertools
import json
import os
import sys
import threading
import time
import traceback

from lora_codemod.smoke.child.shims import FORCE_BACKEND_ENV  # noqa: F401 (the parent sets it)

EVENTS_ENV = "LORA_CODEMOD_SMOKE_EVENTS"
# JSON: standins, like, cpu, max_steps, cache (this run's stand-in dirs), cache_root (the
# environment's cache), tiny_model (where {tiny_model} goes), verify, share_gpus.
SETTINGS_ENV = "LORA_CODEMOD_SMOKE_SETTINGS"


def process_rank() -> int:
    # torchrun sets RANK (global); a single process has none and is rank 0.
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


class EventLog:
    """Appends one JSON object per line; a line is written and flushed in one call."""

    def __init__(self, directory: str | None):
        self.rank = process_rank()
        self.directory = directory
        self._lock = threading.Lock()
        self._file = None
        self._standins: set = set()
        if directory:
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, f"rank{self.rank}-pid{os.getpid()}.jsonl")
            self._file = open(path, "a", encoding="utf-8", buffering=1)

    def emit(self, kind: str, **fields) -> None:
        if self._file is None:
            return
        record = {"kind": kind, "rank": self.rank, "pid": os.getpid(), "t": time.time(), **fields}
        line = json.dumps(record, default=str) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def phase(self, text: str) -> None:
        self.emit("phase", phase=text)

    def standin(self, what: str, detail: str) -> None:
        """Something the run substituted for what the script asked (recorded once per process)."""
        key = (what, detail)
        with self._lock:
            if key in self._standins:
                return
            self._standins.add(key)
        self.emit("standin", what=what, detail=detail)


class _SaveStack(threading.local):
    def __init__(self) -> None:
        self.active: list[dict] = []
        self.unrecorded = 0  # > 0: saves made by lora-codemod itself (a stand-in's weights), not the script's


class unrecorded:
    """Saves inside this block are lora-codemod's own: they are not recorded as the script's."""

    def __enter__(self):
        _stack.unrecorded += 1
        return self

    def __exit__(self, *exc):
        _stack.unrecorded -= 1
        return False


_ids = itertools.count(1)
_stack = _SaveStack()


def _describe_model(obj) -> tuple[str, str, bool]:
    """(class name, kind, LoRA layers injected) for the object being saved."""
    cls = type(obj)
    name = f"{cls.__module__}.{cls.__qualname__}"
    mro = {f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__}
    if any(m.startswith("peft.") and m.endswith(".PeftModel") for m in mro):
        return name, "peft", True
    has_lora = False
    named_modules = getattr(obj, "named_modules", None)
    if named_modules is not None:
        try:
            has_lora = any(hasattr(m, "lora_A") for _, m in named_modules())
        except Exception:
            has_lora = False
    if getattr(obj, "_hf_peft_config_loaded", False):
        # model.add_adapter(cfg): transformers' own PEFT integration, which saves adapter files.
        return name, "transformers (add_adapter)", has_lora
    return name, "transformers", has_lora


def _bound_argument(function, args, kwargs, name: str, default):
    try:
        bound = inspect.signature(function).bind_partial(*args, **kwargs)
    except TypeError:
        return kwargs.get(name, default)
    return bound.arguments.get(name, default)


def _recorded(log: EventLog, api: str, describe):
    """Wrap a save method: `describe(self, args, kwargs)` gives the event's fields before the call."""

    def decorate(original):
        @functools.wraps(original)
        def wrapper(self, *args, **kwargs):
            if _stack.unrecorded:
                return original(self, *args, **kwargs)
            fields = describe(original, self, args, kwargs)
            parent = _stack.active[-1] if _stack.active else None
            event = {"id": f"{log.rank}-{os.getpid()}-{next(_ids)}", "api": api, **fields}
            event["parent"] = parent["id"] if parent else None
            event["via"] = parent["api"] if parent else None
            log.emit("save", **event)
            if parent is None:
                log.phase(f"saving ({api})")
            _stack.active.append(event)
            try:
                result = original(self, *args, **kwargs)
            except BaseException as exc:
                log.emit("save_end", id=event["id"], ok=False, error=f"{type(exc).__name__}: {exc}")
                raise
            finally:
                _stack.active.pop()
            log.emit("save_end", id=event["id"], ok=True, error=None)
            return result

        wrapper.__lora_codemod_instrumented__ = True
        return wrapper

    return decorate


def _describe_save_pretrained(original, self, args, kwargs) -> dict:
    directory = _bound_argument(original, (self, *args), kwargs, "save_directory", None)
    writes = _bound_argument(original, (self, *args), kwargs, "is_main_process", True)
    cls, kind, has_lora = _describe_model(self)
    return {
        "class": cls,
        "model_kind": kind,
        "lora_injected": has_lora,
        "dir": os.path.abspath(os.fspath(directory)) if directory is not None else None,
        "writes": bool(writes),
        "adapters": sorted(getattr(self, "peft_config", {}) or {}) if kind == "peft" else None,
    }


def _describe_save_model(original, self, args, kwargs) -> dict:
    directory = _bound_argument(original, (self, *args), kwargs, "output_dir", None)
    if directory is None:
        directory = getattr(getattr(self, "args", None), "output_dir", None)
    internal = bool(_bound_argument(original, (self, *args), kwargs, "_internal_call", False))
    model = getattr(self, "model", None)
    cls, kind, has_lora = _describe_model(model) if model is not None else ("?", "?", False)
    # Trainer.save_model writes only where args.should_save (the main process, or one per node).
    writes = bool(getattr(getattr(self, "args", None), "should_save", True))
    return {
        "class": cls,
        "model_kind": kind,
        "lora_injected": has_lora,
        "dir": os.path.abspath(os.fspath(directory)) if directory is not None else None,
        "writes": writes,
        "checkpoint": internal,
        "adapters": None,
    }


def _patch_method(owner, name: str, wrapper_factory) -> None:
    original = owner.__dict__.get(name)
    if original is None or getattr(original, "__lora_codemod_instrumented__", False):
        return
    setattr(owner, name, wrapper_factory(original))


def _patch_modeling_utils(log: EventLog, module) -> None:
    model_class = module.PreTrainedModel
    _patch_method(model_class, "save_pretrained", _recorded(log, "save_pretrained", _describe_save_pretrained))



def _patch_peft_model(log: EventLog, module) -> None:
    _patch_method(module.PeftModel, "save_pretrained", _recorded(log, "save_pretrained", _describe_save_pretrained))


def _patch_trainer(log: EventLog, module) -> None:
    trainer_class = module.Trainer
    _patch_method(trainer_class, "save_model", _recorded(log, "save_model", _describe_save_model))

    from lora_codemod.smoke.child import shims

    trainer_class.push_to_hub = shims._neutralised(log, "Trainer.push_to_hub()")

    def init_factory(original):
        @functools.wraps(original)
        def __init__(self, *args, **kwargs):
            original(self, *args, **kwargs)
            shims.trainer_setup(log, self)
            watch_missing_save(log, getattr(self, "model", None))

        __init__.__lora_codemod_instrumented__ = True
        return __init__

    _patch_method(trainer_class, "__init__", init_factory)


# ---------------------------------------------------------------- a save_pretrained that is not there

MISSING_SAVE = "save_pretrained"
# A lookup written as `obj.save_pretrained` (then called): not hasattr()/getattr(obj, name, None),
# which are calls and expect the miss.
_DIRECT_LOOKUPS = frozenset({"LOAD_ATTR", "LOAD_METHOD", "LOAD_SUPER_ATTR"})
_recorded_misses: set = set()


def _lookup_opcode(frame) -> str | None:
    import dis

    try:
        return next((i.opname for i in dis.get_instructions(frame.f_code) if i.offset == frame.f_lasti), None)
    except Exception:
        return None


def _record_missing_save(log: EventLog, obj, exc: BaseException, frame) -> None:
    if frame is None or _lookup_opcode(frame) not in _DIRECT_LOOKUPS:
        return
    cls = type(obj)
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
    key = (cls, where)
    if key in _recorded_misses:
        return
    _recorded_misses.add(key)
    log.emit("missing_save", **{"class": f"{cls.__module__}.{cls.__qualname__}", "attribute": MISSING_SAVE,
                                "error": f"{type(exc).__name__}: {exc}", "where": where})


def watch_missing_save(log: EventLog, model) -> None:
    """Record `model.save_pretrained` lookups that fail on the Trainer's model when it is a plain
    `nn.Module` (a wrapper): scripts often catch that AttributeError, log it and go on, so the
    run ends well with no adapter. Only that model's class gets the hook, so the modules inside
    it (every layer's attribute lookups) run as before.
    """
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(model, torch.nn.Module):
        return
    cls = type(model)
    if hasattr(cls, MISSING_SAVE):
        return
    current = cls.__getattr__  # nn.Module's, or the class's own
    if getattr(current, "__lora_codemod_instrumented__", False):
        return

    def __getattr__(self, name):
        try:
            return current(self, name)
        except AttributeError as exc:
            if name == MISSING_SAVE:
                _record_missing_save(log, self, exc, sys._getframe(1))
            raise

    __getattr__.__lora_codemod_instrumented__ = True
    cls.__getattr__ = __getattr__


def _patch_torch(log: EventLog, module) -> None:
    from lora_codemod.smoke.child import shims

    shims.patch_torch_cpu(log, module)
    shims.patch_torch_shared(log, module)
    forced = os.environ.get(FORCE_BACKEND_ENV) or None
    distributed = getattr(module, "distributed", None)
    if distributed is None or not hasattr(distributed, "init_process_group"):
        return
    original = distributed.init_process_group
    if getattr(original, "__lora_codemod_instrumented__", False):
        return

    @functools.wraps(original)
    def init_process_group(*args, **kwargs):
        requested = args[0] if args else kwargs.get("backend")
        if forced:
            if requested is not None and str(requested) != forced:
                log.emit("backend", requested=str(requested), used=forced)
            if args:
                args = (forced, *args[1:])
            else:
                kwargs["backend"] = forced
            kwargs.pop("device_id", None)  # a CUDA device id makes no sense once GPUs are hidden
        result = original(*args, **kwargs)
        # Proof that this rank joined a process group (else every rank thinks it is rank zero).
        log.emit("process_group", backend=str(distributed.get_backend()), world_size=distributed.get_world_size())
        return result

    init_process_group.__lora_codemod_instrumented__ = True
    distributed.init_process_group = init_process_group


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs hooks right after a named module has executed, whoever imports it."""

    def __init__(self, hooks: dict):
        self.hooks = dict(hooks)  # module name -> list of functions of the module

    def find_spec(self, fullname, path, target=None):
        # Not popped here: availability checks (importlib.util.find_spec("torch")) ask for a spec
        # without loading it; the hooks must wait for the import that really executes the module.
        if fullname not in self.hooks:
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original_exec = spec.loader.exec_module

        def exec_module(module):
            original_exec(module)
            for hook in self.hooks.pop(fullname, None) or ():
                hook(module)

        spec.loader.exec_module = exec_module
        return spec


def read_settings() -> dict:
    text = os.environ.get(SETTINGS_ENV)
    if not text:
        return {"standins": False, "cpu": False, "max_steps": 0}
    return json.loads(text)


def install(events_dir: str | None, settings: dict | None = None) -> EventLog:
    """Install every patch (now for modules already imported, else on their import)."""
    from lora_codemod.smoke.child import shims, standins

    settings = read_settings() if settings is None else settings
    shims.SETTINGS.clear()
    shims.SETTINGS.update(settings)
    log = EventLog(events_dir)
    hooks: dict[str, list] = {}

    def add(name, function):
        hooks.setdefault(name, []).append(function)

    add("torch", functools.partial(_patch_torch, log))
    add("transformers.modeling_utils", functools.partial(_patch_modeling_utils, log))
    add("transformers.trainer", functools.partial(_patch_trainer, log))
    add("peft.peft_model", functools.partial(_patch_peft_model, log))
    add("transformers.training_args", functools.partial(shims.patch_training_args, log))
    add("transformers.utils.hub", functools.partial(shims.patch_push_to_hub_mixin, log))
    add("huggingface_hub.hf_api", functools.partial(shims.patch_hf_api, log))
    add("huggingface_hub", functools.partial(shims.patch_hub_downloads, log))
    for name, function in standins.loader_hooks(log, settings).items():
        add(name, function)
    pending = {}
    for name, functions in hooks.items():
        if name in sys.modules:
            for function in functions:
                function(sys.modules[name])
        else:
            pending[name] = functions
    sys.meta_path.insert(0, _AfterImport(pending))
    shims.install_flash_attn_import(log)
    return log


def _where(exc: BaseException, script_path: str | None) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    # Where in the user's script it went wrong, rather than deep inside a library.
    in_script = [f for f in frames if script_path and f.filename == script_path]
    frame = (in_script or frames or [None])[-1]
    return f"{frame.filename}:{frame.lineno}" if frame is not None else ""


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""


def exception_summary(exc: BaseException, script_path: str | None = None) -> dict:
    summary = {"type": type(exc).__name__, "message": _first_line(exc), "where": _where(exc, script_path)}
    # What it began as: the first exception of the chain ("During handling of the above exception,
    # another exception occurred"), when it is another one (a RecursionError from a dataset that
    # retries the next sample after every failure began as that failure).
    first, seen = exc, {id(exc)}
    while True:
        previous = first.__cause__ or first.__context__
        if previous is None or id(previous) in seen or len(seen) > 10000:
            break
        seen.add(id(previous))
        first = previous
    if first is not exc and (type(first) is not type(exc) or _first_line(first) != summary["message"]):
        summary["began_as"] = {"type": type(first).__name__, "message": _first_line(first),
                               "where": _where(first, script_path)}
    return summary
