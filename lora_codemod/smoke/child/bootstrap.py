"""Entry point of the child process: `python -m lora_codemod.smoke.child.bootstrap SCRIPT_ARGS...`.

Installs the instrumentation, then runs the (patched) code as `__main__` the way `python SCRIPT`
would: `__file__` and `sys.argv[0]` are the user's script, its directory is `sys.path[0]`, and
tracebacks name the user's file (with the patched lines, which are what ran).
"""

from __future__ import annotations

import linecache
import os
import sys
import time
import traceback
import types

CODE_ENV = "LORA_CODEMOD_SMOKE_CODE"  # file holding the code to run (the patched copy)
SCRIPT_ENV = "LORA_CODEMOD_SMOKE_SCRIPT"  # the user's script, as named in tracebacks and __file__


def run_script(code_path: str, script_path: str, argv: list[str], log, settings: dict | None = None) -> None:
    from lora_codemod.smoke.child.instrument import exception_summary

    with open(code_path, "rb") as handle:
        source = handle.read()
    script_path = os.path.abspath(script_path)
    # Tracebacks read source lines through linecache: show the code that ran, not the file on disk.
    # mtime None keeps linecache.checkcache from replacing the entry with the file's own lines.
    text = source.decode("utf-8", errors="replace")
    linecache.cache[script_path] = (len(text), None, text.splitlines(keepends=True), script_path)
    code = compile(source, script_path, "exec", dont_inherit=True)

    main = types.ModuleType("__main__")
    main.__file__ = script_path
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    sys.argv = [script_path, *argv]
    sys.path[0] = os.path.dirname(script_path)

    log.phase("running script")
    try:
        exec(code, main.__dict__)
    except SystemExit as exc:
        code_value = exc.code
        if code_value in (0, None):
            finish(log, settings or {})
        log.emit("exit", code=code_value if isinstance(code_value, int) or code_value is None else 1)
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        # The traceback a plain `python SCRIPT` would print: from the script's frames down,
        # without this bootstrap's frames on top.
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next))
        log.emit("exception", **exception_summary(exc, script_path), traceback=clipped_traceback(text))
        write_elastic_error_file(exc, text)
        sys.stderr.write(text)
        sys.stderr.flush()
        raise SystemExit(1) from None
    finish(log, settings or {})
    log.emit("exit", code=0)
    log.phase("finished")


TRACEBACK_CHARS = 12000  # the end of a longer traceback (the last frames and the error) is kept


def clipped_traceback(text: str) -> str:
    """The start (where a chain of exceptions began) and the end (the last frames and the error)."""
    if len(text) <= TRACEBACK_CHARS:
        return text
    head, tail = text[: TRACEBACK_CHARS // 4], text[-(TRACEBACK_CHARS * 3 // 4):]
    head = head[: head.rfind("\n") + 1] or head
    tail = tail[tail.find("\n") + 1:] or tail
    return f"{head}[... {len(text) - len(head) - len(tail):,} characters of the traceback cut ...]\n{tail}"


def write_elastic_error_file(exc: BaseException, text: str) -> None:
    """Under torchrun, the rank's error file (TORCHELASTIC_ERROR_FILE), as torch's `@record` writes
    it: torchrun's failure summary then shows this rank's traceback instead of a link to the docs."""
    import json

    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path or os.path.exists(path):
        return
    data = {"message": {"message": f"{type(exc).__name__}: {exc}",
                        "extraInfo": {"py_callstack": text, "timestamp": str(int(time.time()))}}}
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
    except OSError:
        pass


def finish(log, settings: dict) -> None:
    """After a script that succeeded: every rank done, then the adapter verified here (torch loaded)."""
    all_ranks_done = close_process_group(log)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        all_ranks_done = True
    if all_ranks_done and log.rank == 0:
        verify_here(log, settings.get("verify"))


def verify_here(log, spec: dict | None) -> None:
    """Verify the adapter in this process, where torch and the libraries are already imported.

    The directory is the one the parent will choose (--adapter-dir, else where the last save of a
    LoRA model went, judged from every rank's records); the parent checks that it is, and verifies
    itself when no result came (a crash here, ranks that could not be waited for).
    """
    if not spec or not log.directory:
        return
    from lora_codemod.smoke.child import records, verify

    started = time.perf_counter()
    try:
        directory = spec.get("adapter_dir")
        if not directory:
            saves = records.collect_saves(records.read_events(log.directory))
            directory = records.last_lora_save_dir(saves) or spec.get("default_dir")
        if not directory:
            return
        log.phase("verifying the adapter")
        result = verify.verify_adapter_dir(directory, base_model=spec.get("base_model"))
    except Exception as exc:  # the parent verifies instead
        log.emit("verify_error", error=f"{type(exc).__name__}: {exc}")
        return
    log.emit("verify", dir=os.path.normpath(directory), base_model=spec.get("base_model"), result=result.as_dict())
    log.emit("timing", what="verify", seconds=round(time.perf_counter() - started, 3))


def prepare_tiny_model(settings: dict) -> tuple[bool, float] | None:
    """{tiny_model}: this run's copy of the environment's cached tiny model (made now if not cached)."""
    destination = settings.get("tiny_model")
    if not destination:
        return None
    from pathlib import Path

    from lora_codemod.smoke.child import cache

    def build(directory):
        from lora_codemod.smoke.child.tiny_model import write_tiny_model

        write_tiny_model(directory)

    started = time.perf_counter()
    was_cached = cache.materialise(settings.get("cache_root"), "tiny-llama", build, Path(destination))
    return was_cached, time.perf_counter() - started


def share_gpus(settings: dict) -> str | None:
    """More ranks than GPUs: this rank sees one GPU, the visible ones taken in turn (before torch loads)."""
    shared = settings.get("share_gpus")
    if not shared:
        return None
    visible = [str(v) for v in shared.get("visible") or []]
    if not visible:
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    chosen = visible[local_rank % len(visible)]
    os.environ["CUDA_VISIBLE_DEVICES"] = chosen
    return chosen


def close_process_group(log) -> bool:
    """After a script that succeeded: wait for every rank, then destroy the process group.

    Scripts rarely destroy it themselves. Under gloo (torch 2.13) a rank that leaves while another
    is still saving aborts at interpreter exit ("terminate called without an active exception"),
    which is a teardown artefact, not a verdict on the save. Ranks that already destroyed the
    group, or never made one, are left alone.
    """
    distributed = sys.modules.get("torch.distributed")
    if distributed is None or not distributed.is_available() or not distributed.is_initialized():
        return False
    log.phase("waiting for the other ranks")
    try:
        distributed.barrier()
        distributed.destroy_process_group()
    except Exception as exc:  # reported, and the script's own result stands
        log.emit("teardown", ok=False, error=f"{type(exc).__name__}: {exc}")
        return False
    log.emit("teardown", ok=True, error=None)
    return True


def main() -> None:
    from lora_codemod.smoke.child.instrument import EVENTS_ENV, install, read_settings

    code_path = os.environ.get(CODE_ENV)
    script_path = os.environ.get(SCRIPT_ENV)
    if not code_path or not script_path:
        sys.stderr.write(f"lora_codemod.smoke.child.bootstrap: {CODE_ENV} and {SCRIPT_ENV} must be set\n")
        raise SystemExit(2)
    settings = read_settings()
    gpu = share_gpus(settings)
    # Before the instrumentation: its hooks would record the tiny model's own save as the script's.
    tiny = prepare_tiny_model(settings)
    log = install(os.environ.get(EVENTS_ENV), settings)
    log.emit("start", world_size=int(os.environ.get("WORLD_SIZE", "1")), local_rank=os.environ.get("LOCAL_RANK"),
             gpu=gpu)
    if tiny is not None:
        was_cached, seconds = tiny
        log.emit("timing", what="tiny model", seconds=round(seconds, 3), cached=was_cached)
        if log.rank == 0:
            log.standin("model", "{tiny_model} -> a tiny Llama (random weights) and the tiny tokenizer, "
                        + ("from this environment's cache" if was_cached else "made now and cached for the next runs"))
    run_script(code_path, script_path, sys.argv[1:], log, settings)


if __name__ == "__main__":
    main()
