"""Launch a (patched) training script in a child process, watch it, and judge what it saved.

One `SmokeRun` per mode (unpatched / patched). The child is `python -m lora_codemod.smoke.bootstrap`
(under torchrun for --nproc > 1) in its own process group, so a timeout can stop all of it.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import lora_codemod
from lora_codemod.smoke import verify as verify_mod
from lora_codemod.smoke.bootstrap import CODE_ENV, SCRIPT_ENV
from lora_codemod.smoke.device import LaunchPlan, launch_command
from lora_codemod.smoke.instrument import EVENTS_ENV, FORCE_BACKEND_ENV

TINY_MODEL = "{tiny_model}"
OUTPUT_DIR = "{output_dir}"
DEFAULT_ADAPTER_DIR = "{output_dir}/lora_adapters"
KILL_GRACE_SECONDS = 5.0
OUTPUT_TAIL_LINES = 200


class SmokeUsageError(Exception):
    """The run cannot start (bad arguments, the fix failed to parse the script): exit 2."""

    def __init__(self, message: str, complete_line: bool = False):
        super().__init__(message)
        # True when the message is already a full `path:line:col: error: ...` line.
        self.complete_line = complete_line


@dataclass
class FixSummary:
    applied: bool  # False under --no-fix
    changed: bool = False
    findings: list = field(default_factory=list)  # lora_codemod.findings.Finding

    def as_dict(self) -> dict:
        return {
            "applied": self.applied,
            "changed": self.changed,
            "findings": [f.as_dict() for f in self.findings],
        }


@dataclass
class SaveCall:
    """One recorded save: save_pretrained on a model, or Trainer.save_model."""

    id: str
    rank: int
    api: str
    cls: str
    model_kind: str
    directory: str | None
    writes: bool
    parent: str | None = None
    via: str | None = None
    checkpoint: bool = False
    lora_injected: bool = False
    finished: bool = False
    error: str | None = None

    @property
    def short_class(self) -> str:
        return self.cls.rsplit(".", 1)[-1]

    def as_dict(self) -> dict:
        return {
            "rank": self.rank,
            "api": self.api,
            "class": self.cls,
            "model_kind": self.model_kind,
            "dir": self.directory,
            "writes": self.writes,
            "via": self.via,
            "checkpoint": self.checkpoint,
            "lora_injected": self.lora_injected,
            "finished": self.finished,
            "error": self.error,
        }


@dataclass
class SmokeRun:
    label: str  # "patched" or "unpatched"
    script: str
    plan: LaunchPlan
    command: list[str]
    output_dir: str
    adapter_dir: str
    fix: FixSummary
    exit_code: int | None = None
    timed_out: bool = False
    wall_seconds: float = 0.0
    last_phase: str = ""
    output_tail: list[str] = field(default_factory=list)
    log_path: str = ""
    saves: list[SaveCall] = field(default_factory=list)
    exception: dict | None = None
    backend_overrides: list[dict] = field(default_factory=list)
    process_groups: list[dict] = field(default_factory=list)  # one per rank that joined a group
    run_checks: list[verify_mod.Check] = field(default_factory=list)
    verify: verify_mod.VerifyResult | None = None

    @property
    def crashed(self) -> bool:
        return self.timed_out or self.exit_code != 0

    @property
    def status_code(self) -> int:
        if self.crashed:
            return 2
        failed = any(c.status == verify_mod.FAIL for c in self.run_checks)
        if failed or self.verify is None or not self.verify.passed:
            return 1
        return 0

    def all_checks(self) -> list[verify_mod.Check]:
        return [*self.run_checks, *(self.verify.checks if self.verify else [])]

    def adapter_writers(self) -> list[int]:
        target = _same_path_key(self.adapter_dir)
        return sorted({s.rank for s in self.saves if s.writes and s.directory and _same_path_key(s.directory) == target})

    def verdict(self) -> str:
        if self.timed_out:
            phase = f" while {self.last_phase}" if self.last_phase else ""
            return f"TIMEOUT: the script did not finish in time{phase}; every process was stopped"
        if self.exit_code != 0:
            text = f"CRASHED: the script exited with code {self.exit_code}"
            if self.exception:
                text += f": {self.exception['type']}: {self.exception['message']}"
            return text
        failure = next((c for c in self.all_checks() if c.status == verify_mod.FAIL), None)
        if failure is not None:
            return f"FAIL: {failure.name}: {failure.detail}"
        writers = self.adapter_writers()
        who = ""
        if self.plan.distributed and len(writers) == 1:
            who = f", written by rank {writers[0]} alone"
        warned = any(c.status == verify_mod.WARN for c in self.all_checks())
        return f"PASS: a valid LoRA adapter in {self.shown(self.adapter_dir)}{who}" + (" (with warnings)" if warned else "")

    def shown(self, path: str | None) -> str:
        """A path as the user wrote it: under the temporary output dir, as {output_dir}/..."""
        if not path:
            return "?"
        if path == self.output_dir or path.startswith(self.output_dir + os.sep):
            return OUTPUT_DIR + path[len(self.output_dir) :]
        return path

    def as_dict(self) -> dict:
        return {
            "mode": self.label,
            "script": self.script,
            "device": self.plan.device,
            "processes": self.plan.nproc,
            "backend": self.plan.backend,
            "command": self.command,
            "wall_seconds": round(self.wall_seconds, 3),
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "last_phase": self.last_phase,
            "exception": self.exception,
            "backend_overrides": self.backend_overrides,
            "process_groups": self.process_groups,
            "fix": self.fix.as_dict(),
            "output_dir": self.output_dir,
            "adapter_dir": self.adapter_dir,
            "saves": [s.as_dict() for s in self.saves],
            "adapter_writers": self.adapter_writers(),
            "checks": [c.as_dict() for c in self.all_checks()],
            "verify": self.verify.as_dict() if self.verify else None,
            "verdict": self.verdict(),
            "status_code": self.status_code,
            "output_tail": self.output_tail[-40:],
            "log": self.log_path,
        }


def _same_path_key(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


# ---------------------------------------------------------------- child output and events


class OutputReader(threading.Thread):
    """Drains the child's merged stdout/stderr: keeps a tail, the last line, a log file."""

    def __init__(self, stream, log_path: str, on_line: Callable[[str], None] | None):
        super().__init__(daemon=True)
        self.stream = stream
        self.log_path = log_path
        self.on_line = on_line
        self.tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL_LINES)
        self.last_line = ""

    def run(self) -> None:
        pending = b""
        with open(self.log_path, "wb") as log:
            while True:
                chunk = os.read(self.stream.fileno(), 65536)
                if not chunk:
                    break
                log.write(chunk)
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    self._line(raw, complete=True)
                if pending:
                    self._line(pending, complete=False)
        if pending:
            self._line(pending, complete=True)

    def _line(self, raw: bytes, complete: bool) -> None:
        # Progress bars redraw with \r: what a terminal would show is the last segment.
        text = raw.decode("utf-8", errors="replace").split("\r")
        shown = next((segment.strip() for segment in reversed(text) if segment.strip()), "")
        if shown:
            self.last_line = shown
        if complete:
            line = raw.decode("utf-8", errors="replace").rstrip("\r")
            line = line.rsplit("\r", 1)[-1]
            self.tail.append(line)
            if self.on_line is not None:
                self.on_line(line)


def read_events(events_dir: str) -> list[dict]:
    events = []
    directory = Path(events_dir)
    if not directory.is_dir():
        return events
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written right now
    events.sort(key=lambda e: e.get("t", 0))
    return events


def latest_phase(events: list[dict]) -> str:
    phases = [e for e in events if e.get("kind") == "phase"]
    if not phases:
        return ""
    # Rank 0 speaks for the run; other ranks only when rank 0 has said nothing yet.
    rank0 = [e for e in phases if e.get("rank") == 0]
    event = (rank0 or phases)[-1]
    return str(event.get("phase", ""))


def collect_saves(events: list[dict]) -> list[SaveCall]:
    saves: dict[str, SaveCall] = {}
    for event in events:
        if event.get("kind") == "save":
            saves[event["id"]] = SaveCall(
                id=event["id"],
                rank=int(event.get("rank", 0)),
                api=event.get("api", "?"),
                cls=event.get("class", "?"),
                model_kind=event.get("model_kind", "?"),
                directory=event.get("dir"),
                writes=bool(event.get("writes")),
                parent=event.get("parent"),
                via=event.get("via"),
                checkpoint=bool(event.get("checkpoint")),
                lora_injected=bool(event.get("lora_injected")),
            )
        elif event.get("kind") == "save_end" and event.get("id") in saves:
            call = saves[event["id"]]
            call.finished = bool(event.get("ok"))
            call.error = event.get("error")
    return sorted(saves.values(), key=lambda s: (s.rank, s.id.rsplit("-", 1)[0], int(s.id.rsplit("-", 1)[1])))


# ---------------------------------------------------------------- process control


def _descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (Linux /proc); torchrun puts each worker in its own session."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: fields start after the last ')'.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1:
            children[int(fields[1])].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_tree(process: subprocess.Popen, extra_pids: list[int], sig: int) -> None:
    targets = set(_descendants(process.pid)) | set(extra_pids)
    for group in {process.pid, *targets}:
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in targets:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop_process_tree(process: subprocess.Popen, extra_pids: list[int]) -> None:
    """SIGTERM the whole tree, then SIGKILL what is left after a grace period."""
    survivors = _descendants(process.pid) + list(extra_pids)
    _signal_tree(process, survivors, signal.SIGTERM)
    try:
        process.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    _signal_tree(process, survivors, signal.SIGKILL)
    try:
        process.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass


@dataclass
class ChildOutcome:
    exit_code: int | None
    timed_out: bool
    wall_seconds: float
    output_tail: list[str]
    last_phase: str


class StatusSink:
    """What the runner tells the user while the child runs (the terminal UI implements it)."""

    def start(self, label: str) -> None: ...

    def update(self, elapsed: float, phase: str, last_line: str) -> None: ...

    def line(self, text: str) -> None: ...

    def stop(self) -> None: ...


def run_child(
    command: list[str],
    env: dict[str, str],
    events_dir: str,
    log_path: str,
    timeout: float,
    sink: StatusSink,
    stream_lines: bool,
) -> ChildOutcome:
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a timeout stops torchrun and workers alike
    )
    reader = OutputReader(process.stdout, log_path, sink.line if stream_lines else None)
    reader.start()
    timed_out = False
    phase = "starting"
    try:
        while True:
            try:
                process.wait(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                pass
            elapsed = time.perf_counter() - started
            phase = latest_phase(read_events(events_dir)) or phase
            sink.update(elapsed, phase, reader.last_line)
            if elapsed > timeout:
                timed_out = True
                stop_process_tree(process, _event_pids(events_dir))
                break
    except BaseException:
        # Ctrl-C or anything else: never leave training processes behind.
        stop_process_tree(process, _event_pids(events_dir))
        raise
    finally:
        reader.join(timeout=5)
    wall = time.perf_counter() - started
    phase = latest_phase(read_events(events_dir)) or phase
    return ChildOutcome(process.returncode, timed_out, wall, list(reader.tail), phase)


def _event_pids(events_dir: str) -> list[int]:
    return sorted({int(e["pid"]) for e in read_events(events_dir) if "pid" in e and int(e["pid"]) != os.getpid()})


# ---------------------------------------------------------------- a whole smoke run


def substitute(text: str, values: dict[str, str]) -> str:
    # Plain replacement, not str.format: script arguments may hold other braces (JSON, globs).
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def needs_tiny_model(*texts: str | None) -> bool:
    return any(t and TINY_MODEL in t for t in texts)


def package_root() -> str:
    return str(Path(lora_codemod.__file__).resolve().parent.parent)


def child_environment(plan: LaunchPlan, code_path: str, script: str, events_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in plan.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"  # lines reach the status line as they are printed
    # The bootstrap must import even when lora-codemod runs from a source checkout.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root(), env.get("PYTHONPATH", "")) if p)
    env[CODE_ENV] = code_path
    env[SCRIPT_ENV] = script
    env[EVENTS_ENV] = events_dir
    if plan.forced_backend:
        env[FORCE_BACKEND_ENV] = plan.forced_backend
    else:
        env.pop(FORCE_BACKEND_ENV, None)
    return env


def apply_fix(script: Path, source: bytes) -> tuple[bytes, FixSummary]:
    from lora_codemod.engine import transform_source

    result = transform_source(source, str(script))
    if result.error is not None:
        raise SmokeUsageError(result.error.format(), complete_line=True)
    return result.output, FixSummary(applied=True, changed=result.changed, findings=list(result.findings))


def run_checks(run: SmokeRun) -> list[verify_mod.Check]:
    checks = []
    top_level_writes = [s for s in run.saves if s.writes and s.directory and s.parent is None]
    by_dir: dict[str, set[int]] = collections.defaultdict(set)
    for save in top_level_writes:
        by_dir[_same_path_key(save.directory)].add(save.rank)
    shared = {d: ranks for d, ranks in by_dir.items() if len(ranks) > 1}

    writers = run.adapter_writers()
    if run.plan.distributed:
        joined = sorted({int(g["rank"]) for g in run.process_groups if g.get("world_size") == run.plan.nproc})
        if len(joined) == run.plan.nproc:
            backends = ", ".join(sorted({str(g["backend"]) for g in run.process_groups}))
            checks.append(
                verify_mod.Check("ranks joined one process group", verify_mod.PASS, f"backend {backends}", f"{len(joined)} ranks")
            )
        else:
            checks.append(
                verify_mod.Check(
                    "ranks joined one process group",
                    verify_mod.WARN,
                    "not every rank joined a process group: each such rank trained alone and "
                    "is_world_process_zero() was true on all of them",
                    f"{len(joined)} of {run.plan.nproc} ranks",
                )
            )
        if len(writers) == 1:
            checks.append(verify_mod.Check("one rank writes the adapter", verify_mod.PASS, f"rank {writers[0]} alone", "1 writer"))
        elif not writers:
            checks.append(
                verify_mod.Check(
                    "one rank writes the adapter",
                    verify_mod.FAIL,
                    "no recorded save wrote the adapter directory",
                    "0 writers",
                )
            )
        else:
            ranks = ", ".join(map(str, writers))
            checks.append(
                verify_mod.Check(
                    "one rank writes the adapter",
                    verify_mod.FAIL,
                    f"ranks {ranks} all wrote the adapter directory at the same time (guard the save with "
                    "trainer.is_world_process_zero())",
                    f"{len(writers)} writers",
                )
            )
    elif not writers:
        checks.append(
            verify_mod.Check(
                "a recorded save wrote the adapter",
                verify_mod.WARN,
                "no save_pretrained/save_model call wrote the adapter directory",
                "0 saves",
            )
        )
    other_shared = {d: r for d, r in shared.items() if d != _same_path_key(run.adapter_dir)}
    if other_shared:
        directory, ranks = sorted(other_shared.items())[0]
        checks.append(
            verify_mod.Check(
                "one writer per directory",
                verify_mod.FAIL,
                f"ranks {', '.join(map(str, sorted(ranks)))} wrote the same directory {directory}",
                f"{len(other_shared)} shared dir(s)",
            )
        )
    return checks


@dataclass
class SmokeRequest:
    script: Path
    script_args: list[str]
    adapter_dir_template: str = DEFAULT_ADAPTER_DIR
    base_model_template: str | None = None
    plan: LaunchPlan | None = None
    timeout: float = 600.0
    modes: tuple[str, ...] = ("patched",)  # "unpatched", "patched" (in this order under --compare)
    keep: bool = False
    verbose: bool = False


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
    if "patched" in request.modes:
        fixed = apply_fix(request.script, source)  # findings name the script as the user did

    run_dir = Path(tempfile.mkdtemp(prefix="lora-codemod-smoke-"))
    tiny_model = None
    runs = []
    try:
        if needs_tiny_model(*request.script_args, request.adapter_dir_template, request.base_model_template):
            from lora_codemod.smoke.tiny_model import write_tiny_model

            sink.start("making the tiny model")
            tiny_model = str(write_tiny_model(run_dir / "tiny_model").path)
            sink.stop()
        for mode in request.modes:
            if mode == "patched":
                code, fix = fixed
            else:
                code, fix = source, FixSummary(applied=False)
            runs.append(_run_mode(request, script, mode, code, fix, run_dir, tiny_model, sink))
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
    sink: StatusSink,
) -> SmokeRun:
    mode_dir = run_dir / mode
    (mode_dir / "code").mkdir(parents=True)
    output_dir = mode_dir / "output"
    output_dir.mkdir()
    events_dir = mode_dir / "events"
    code_path = mode_dir / "code" / script.name
    code_path.write_bytes(code)  # a temp copy, never next to the user's script

    values = {OUTPUT_DIR: str(output_dir), TINY_MODEL: tiny_model or ""}
    script_args = [substitute(a, values) for a in request.script_args]
    adapter_dir = os.path.abspath(substitute(request.adapter_dir_template, values))
    plan = request.plan
    command = launch_command(plan, script_args)
    env = child_environment(plan, str(code_path), str(script), str(events_dir))
    log_path = str(mode_dir / "output.log")

    sink.start(f"{mode} run of {script.name}")
    try:
        outcome = run_child(command, env, str(events_dir), log_path, request.timeout, sink, request.verbose)
    finally:
        sink.stop()

    events = read_events(str(events_dir))
    run = SmokeRun(
        label=mode,
        script=str(script),
        plan=plan,
        command=command,
        output_dir=str(output_dir),
        adapter_dir=adapter_dir,
        fix=fix,
        exit_code=outcome.exit_code,
        timed_out=outcome.timed_out,
        wall_seconds=outcome.wall_seconds,
        last_phase=outcome.last_phase,
        output_tail=outcome.output_tail,
        log_path=log_path if request.keep else "",
        saves=collect_saves(events),
        exception=next((e for e in events if e.get("kind") == "exception"), None),
        backend_overrides=[e for e in events if e.get("kind") == "backend"],
        process_groups=[
            {k: e.get(k) for k in ("rank", "backend", "world_size")} for e in events if e.get("kind") == "process_group"
        ],
    )
    if run.exception is not None:
        run.exception = {k: run.exception.get(k) for k in ("type", "message", "where", "rank")}
    if not run.crashed:
        run.run_checks = run_checks(run)
        base_model = substitute(request.base_model_template, values) if request.base_model_template else None
        sink.start("verifying the adapter")
        try:
            run.verify = verify_mod.verify_adapter_dir(adapter_dir, base_model=base_model)
        finally:
            sink.stop()
    return run
