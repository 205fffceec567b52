"""Entry point of the child process: `python -m lora_codemod.smoke.child.bootstrap SCRIPT_ARGS...`.

Installs the instrumentation, then runs the (patched) code as `__main__` the way `python SCRIPT`
would: `__file__` and `sys.argv[0]` are the user's script, its directory is `sys.path[0]`, and
tracebacks name the user's file (with the patched lines, which are what ran).
"""

from __future__ import annotations

import linecache
import os
import sys
import traceback
import types

CODE_ENV = "LORA_CODEMOD_SMOKE_CODE"  # file holding the code to run (the patched copy)
SCRIPT_ENV = "LORA_CODEMOD_SMOKE_SCRIPT"  # the user's script, as named in tracebacks and __file__


def run_script(code_path: str, script_path: str, argv: list[str], log) -> None:
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
            close_process_group(log)
        log.emit("exit", code=code_value if isinstance(code_value, int) or code_value is None else 1)
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        log.emit("exception", **exception_summary(exc, script_path))
        # The traceback a plain `python SCRIPT` would print: from the script's frames down,
        # without this bootstrap's frames on top.
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        sys.stderr.flush()
        raise SystemExit(1) from None
    close_process_group(log)
    log.emit("exit", code=0)
    log.phase("finished")


def close_process_group(log) -> None:
    """After a script that succeeded: wait for every rank, then destroy the process group.

    Scripts rarely destroy it themselves. Under gloo (torch 2.13) a rank that leaves while another
    is still saving aborts at interpreter exit ("terminate called without an active exception"),
    which is a teardown artefact, not a verdict on the save. Ranks that already destroyed the
    group, or never made one, are left alone.
    """
    distributed = sys.modules.get("torch.distributed")
    if distributed is None or not distributed.is_available() or not distributed.is_initialized():
        return
    log.phase("waiting for the other ranks")
    try:
        distributed.barrier()
        distributed.destroy_process_group()
    except Exception as exc:  # reported, and the script's own result stands
        log.emit("teardown", ok=False, error=f"{type(exc).__name__}: {exc}")
        return
    log.emit("teardown", ok=True, error=None)


def main() -> None:
    from lora_codemod.smoke.child.instrument import EVENTS_ENV, install

    code_path = os.environ.get(CODE_ENV)
    script_path = os.environ.get(SCRIPT_ENV)
    if not code_path or not script_path:
        sys.stderr.write(f"lora_codemod.smoke.child.bootstrap: {CODE_ENV} and {SCRIPT_ENV} must be set\n")
        raise SystemExit(2)
    log = install(os.environ.get(EVENTS_ENV))
    log.emit("start", world_size=int(os.environ.get("WORLD_SIZE", "1")), local_rank=os.environ.get("LOCAL_RANK"))
    run_script(code_path, script_path, sys.argv[1:], log)


if __name__ == "__main__":
    main()
