"""Launching the child: its environment, its command, watching it, stopping its whole process tree.

The child is `python -m lora_codemod.smoke.child.bootstrap` (under torchrun for --nproc > 1) in its own
process group, so a timeout can stop all of it.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lora_codemod.smoke.child.records import read_events, latest_phase

KILL_GRACE_SECONDS = 5.0
OUTPUT_TAIL_LINES = 200


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
    cwd: str | None = None,
) -> ChildOutcome:
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
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


