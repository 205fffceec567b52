"""A whole smoke run: patch the script in memory, prepare its stand-ins, run each mode, judge it.

The parts live beside this file: `launch` (the child process), `records` (what it recorded),
`verdict` (checks and verdicts), `standins`/`shims`/`instrument` (what runs inside the child).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import lora_codemod
from lora_codemod.smoke.child import cache, records
from lora_codemod.smoke.child import verify as verify_mod
from lora_codemod.smoke.child.bootstrap import CODE_ENV, SCRIPT_ENV
from lora_codemod.smoke.device import LaunchPlan, launch_command
from lora_codemod.smoke.child.instrument import EVENTS_ENV, FORCE_BACKEND_ENV, SETTINGS_ENV
from lora_codemod.smoke.launch import StatusSink, run_child
from lora_codemod.smoke.verdict import FixSummary, SmokeRun, run_checks

TINY_MODEL = "{tiny_model}"
OUTPUT_DIR = "{output_dir}"


class SmokeUsageError(Exception):
    """The run cannot start (bad arguments, the fix failed to parse the script): exit 2."""

    def __init__(self, message: str, complete_line: bool = False):
        super().__init__(message)
        # True when the message is already a full `path:line:col: error: ...` line.
        self.complete_line = complete_line



def substitute(text: str, values: dict[str, str]) -> str:
    # Plain replacement, not str.format: script arguments may hold other braces (JSON, globs).
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def needs_tiny_model(*texts: str | None) -> bool:
    return any(t and TINY_MODEL in t for t in texts)


def package_root() -> str:
    return str(Path(lora_codemod.__file__).resolve().parent)


def bootstrap_path(run_dir: Path) -> str:
    """A directory holding only `lora_codemod` (a link): the child imports the bootstrap from it
    without this interpreter's site-packages shadowing the libraries of another --python."""
    directory = run_dir / "pythonpath"
    directory.mkdir(exist_ok=True)
    link = directory / "lora_codemod"
    if not link.exists():
        try:
            link.symlink_to(package_root(), target_is_directory=True)
        except OSError:
            shutil.copytree(package_root(), link, ignore=shutil.ignore_patterns("__pycache__"))
    return str(directory)


def child_environment(
    plan: LaunchPlan, code_path: str, script: str, events_dir: str, settings: dict, pythonpath: str
) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in plan.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Trackers off (report_to is forced to "none" as well; this covers direct wandb.init calls).
    env["WANDB_MODE"] = "disabled"
    env["WANDB_DISABLED"] = "true"
    env.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")
    env["PYTHONUNBUFFERED"] = "1"  # lines reach the status line as they are printed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH", "")) if p)
    env[CODE_ENV] = code_path
    env[SCRIPT_ENV] = script
    env[EVENTS_ENV] = events_dir
    env[SETTINGS_ENV] = json.dumps(settings)
    if plan.forced_backend:
        env[FORCE_BACKEND_ENV] = plan.forced_backend
    else:
        env.pop(FORCE_BACKEND_ENV, None)
    return env


def apply_fix(script: Path, source: bytes, unsafe_fixes: bool = False) -> tuple[bytes, FixSummary]:
    from lora_codemod.config import Config
    from lora_codemod.engine import transform_source

    result = transform_source(source, str(script), Config(unsafe_fixes=unsafe_fixes))
    if result.error is not None:
        raise SmokeUsageError(result.error.format(), complete_line=True)
    return result.output, FixSummary(applied=True, changed=result.changed, findings=list(result.findings))


def working_directory(mode_dir: Path, user_cwd: Path) -> Path:
    """The run's own working directory: a link to every entry of the user's, so relative reads
    find their files while new relative outputs land here, apart from the other mode's."""
    work = mode_dir / "work"
    work.mkdir()
    try:
        entries = list(user_cwd.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        try:
            (work / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
        except OSError:
            pass
    return work


@dataclass
class SmokeRequest:
    script: Path
    script_args: list[str]
    adapter_dir_template: str | None = None  # None: where the run's last LoRA save went
    base_model_template: str | None = None
    plan: LaunchPlan | None = None
    timeout: float = 600.0
    modes: tuple[str, ...] = ("patched",)  # "unpatched", "patched" (in this order under --compare)
    keep: bool = False
    verbose: bool = False
    max_steps: int = 2  # 0: no cap
    standins: bool = True
    like: str | None = None
    python: str | None = None
    unsafe_fixes: bool = False  # patch with `fix --unsafe-fixes`
    stream_to: object = None  # -v: a binary stream that gets the script's output as it comes


@dataclass
class SmokeSession:
    runs: list[SmokeRun]
    run_dir: str
    kept: bool
    tiny_model: str | None

    @property
    def status_code(self) -> int:
        # Under --compare the patched run decides: the unpatched one is expected to fail.
        return self.runs[-1].status_code

    def as_dict(self) -> dict:
        return {
            "runs": [r.as_dict() for r in self.runs],
            "run_dir": self.run_dir if self.kept else None,
            "tiny_model": self.tiny_model if self.kept else None,
            "status_code": self.status_code,
        }


def run_smoke(request: SmokeRequest, sink: StatusSink) -> SmokeSession:
    script = request.script.resolve()
    if not script.is_file():
        raise SmokeUsageError(f"{request.script}: no such file")
    if request.plan is None:
        raise SmokeUsageError("no launch plan")
    source = script.read_bytes()
    # The fix runs before anything slow: a script the rewrite cannot parse stops here.
    fixed: tuple[bytes, FixSummary] | None = None
    started = time.perf_counter()
    if "patched" in request.modes:
        fixed = apply_fix(request.script, source, request.unsafe_fixes)  # findings name the script as the user did
    fix_seconds = time.perf_counter() - started

    run_dir = Path(tempfile.mkdtemp(prefix="lora-codemod-smoke-"))
    # {tiny_model}: the child copies it there from the environment's cache (made on first use),
    # with the child's own transformers: --python may be another environment.
    tiny_model = None
    if needs_tiny_model(*request.script_args, request.adapter_dir_template, request.base_model_template):
        tiny_model = str(run_dir / "tiny_model")
    runs = []
    try:
        pythonpath = bootstrap_path(run_dir)
        for mode in request.modes:
            if mode == "patched":
                code, fix = fixed
            else:
                code, fix = source, FixSummary(applied=False)
            run = _run_mode(request, script, mode, code, fix, run_dir, tiny_model, pythonpath, sink)
            if mode == "patched":
                run.timings["fix"] = round(fix_seconds, 3)
            runs.append(run)
    finally:
        if not request.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    return SmokeSession(runs, str(run_dir), request.keep, tiny_model)


def _run_mode(
    request: SmokeRequest,
    script: Path,
    mode: str,
    code: bytes,
    fix: FixSummary,
    run_dir: Path,
    tiny_model: str | None,
    pythonpath: str,
    sink: StatusSink,
) -> SmokeRun:
    mode_dir = run_dir / mode
    (mode_dir / "code").mkdir(parents=True)
    output_dir = mode_dir / "output"
    output_dir.mkdir()
    events_dir = mode_dir / "events"
    code_path = mode_dir / "code" / script.name
    code_path.write_bytes(code)  # a temp copy, never next to the user's script
    work = working_directory(mode_dir, Path.cwd())

    values = {OUTPUT_DIR: str(output_dir), TINY_MODEL: tiny_model or ""}
    script_args = [substitute(a, values) for a in request.script_args]
    plan = request.plan
    base_model = substitute(request.base_model_template, values) if request.base_model_template else None
    adapter_dir_asked = (os.path.normpath(os.path.join(str(work), substitute(request.adapter_dir_template, values)))
                         if request.adapter_dir_template else None)
    settings = {
        "standins": request.standins,
        "like": os.path.abspath(request.like) if request.like else None,
        "cpu": plan.device == "cpu",
        "max_steps": request.max_steps,
        "cache": str(mode_dir / "standins"),
        "cache_root": str(cache.default_root()),
        "tiny_model": tiny_model,
        # The child verifies where torch is loaded already; the parent reads the result.
        "verify": {"adapter_dir": adapter_dir_asked, "default_dir": str(output_dir), "base_model": base_model},
        "share_gpus": {"visible": list(plan.shared_gpus)} if plan.shared_gpus else None,
    }
    rank_logs = str(mode_dir / "ranks") if plan.distributed else None
    command = launch_command(plan, script_args, request.python, rank_logs)
    env = child_environment(plan, str(code_path), str(script), str(events_dir), settings, pythonpath)
    log_path = str(mode_dir / "output.log")

    sink.start(f"{mode} run of {script.name}")
    try:
        outcome = run_child(command, env, str(events_dir), log_path, request.timeout, sink, request.stream_to,
                            cwd=str(work))
    finally:
        sink.stop()

    events = records.read_events(str(events_dir))
    saves = records.collect_saves(events)
    if adapter_dir_asked:
        adapter_dir = adapter_dir_asked
        adapter_source = "--adapter-dir"
    else:
        found = records.last_lora_save_dir(saves)
        adapter_dir = found or str(output_dir)
        adapter_source = "last LoRA save" if found else "none recorded"
    run = SmokeRun(
        label=mode,
        script=str(script),
        plan=plan,
        command=command,
        output_dir=str(output_dir),
        adapter_dir=os.path.normpath(adapter_dir),
        adapter_source=adapter_source,
        fix=fix,
        exit_code=outcome.exit_code,
        timed_out=outcome.timed_out,
        wall_seconds=outcome.wall_seconds,
        last_phase=outcome.last_phase,
        output_tail=outcome.output_tail,
        log_path=log_path if request.keep else "",
        saves=saves,
        exception=next((e for e in events if e.get("kind") == "exception"), None),
        backend_overrides=[e for e in events if e.get("kind") == "backend"],
        process_groups=[
            {k: e.get(k) for k in ("rank", "backend", "world_size")} for e in events if e.get("kind") == "process_group"
        ],
        standins=_plan_standins(plan) + records.collect_standins(events),
        training=records.collect_training(events),
        work_dir=str(work),
        missing_saves=records.collect_missing_saves(events),
    )
    if run.exception is not None:
        run.exception = {k: run.exception.get(k) for k in ("type", "message", "where", "rank", "traceback", "began_as")}
    elif run.crashed and plan.distributed and rank_logs:
        run.rank_failure = rank_failure(rank_logs, outcome.output_tail)
    _say_what_became_of_downloads(run)
    run.timings.update(records.collect_timings(events))
    run.timings["child"] = round(outcome.wall_seconds, 3)
    run.timings["parent cpu"] = outcome.parent_cpu  # CPU seconds while it watched the child
    run.timings["child cpu"] = outcome.child_cpu  # the child's whole process tree
    run.output_bytes, run.output_cut_bytes = outcome.output_bytes, outcome.output_cut_bytes
    if not run.crashed:
        run.verify = records.child_verify(events, run.adapter_dir, base_model)
        if run.verify is None:  # the child could not verify it (or chose another directory): here
            sink.start("verifying the adapter")
            started = time.perf_counter()
            try:
                run.verify = verify_mod.verify_adapter_dir(run.adapter_dir, base_model=base_model)
            finally:
                sink.stop()
            run.timings["verify (parent)"] = round(time.perf_counter() - started, 3)
        run.run_checks = run_checks(run)
    return run


DOWNLOAD_REASON = "no stand-in for it: "  # as shims.patch_hub_downloads words it


def _say_what_became_of_downloads(run: SmokeRun) -> None:
    """A failed hub download the script tolerated, or the one that stopped it."""
    exception = run.exception or {}
    raised = f"{exception.get('type')}: {exception.get('message')}" if exception.get("type") else ""
    for item in run.standins:
        if item["what"] != "download":
            continue
        reason = item["detail"].split(DOWNLOAD_REASON, 1)[-1]
        if run.crashed and raised and raised.startswith(reason):
            item["detail"] += "; the script stopped there"
        elif not run.crashed:
            item["detail"] += "; the script caught the error and went on without it"


ROOT_CAUSE = "Root Cause (first observed failure):"


def rank_failure(rank_logs: str, output_tail: list[str]) -> dict | None:
    """The first rank to fail when no Python exception was recorded (killed by a signal, sys.exit,
    a crash in C): torchrun's root-cause summary names it; its error file, else its own log, says why."""
    rank = local_rank = exit_text = None
    if ROOT_CAUSE in output_tail:
        for line in output_tail[output_tail.index(ROOT_CAUSE) + 1:]:
            key, _, value = line.strip().partition(":")
            key, value = key.strip(), value.strip()
            if key == "rank" and rank is None:
                rank = int(value.split()[0]) if value.split() and value.split()[0].isdigit() else None
                local = value.partition("local_rank:")[2].strip(" )")
                local_rank = int(local) if local.isdigit() else rank
            elif key == "exitcode" and exit_text is None:
                exit_text = value.replace("  ", " ").strip()
            if line.startswith("====="):
                break
    if rank is None:
        return None
    found: dict = {"rank": rank, "exit": exit_text, "lines": [], "from": None}
    for attempt in sorted(Path(rank_logs).glob(f"*/attempt_*/{local_rank}")):
        error_file = attempt / "error.json"
        if error_file.is_file():
            try:
                message = json.loads(error_file.read_text(encoding="utf-8", errors="replace"))["message"]
                stack = message.get("extraInfo", {}).get("py_callstack") if isinstance(message, dict) else None
            except (ValueError, KeyError, TypeError):
                stack = None
            if stack:
                found.update(lines=stack.rstrip("\n").splitlines()[-30:], **{"from": "its error file"})
                return found
        for name in ("stderr.log", "stdout.log"):
            log = attempt / name
            if log.is_file() and log.stat().st_size:
                with open(log, "rb") as handle:
                    handle.seek(max(log.stat().st_size - 16384, 0))
                    text = handle.read().decode("utf-8", errors="replace")
                found.update(lines=text.rstrip("\n").splitlines()[-15:], **{"from": f"its own log ({name})"})
                return found
    return found


def _plan_standins(plan: LaunchPlan) -> list[dict]:
    if not plan.shared_gpus:
        return []
    return [{"what": "ranks", "detail": plan.sharing(), "ranks": list(range(plan.nproc))}]
