"""Launching the child: its environment, its command, watching it, stopping its whole process tree.

The child is `python -m lora_codemod.smoke.child.bootstrap` (under torchrun for --nproc > 1) in its own
process group, so a timeout can stop all of it.
"""

from __future__ import annotations

import collections
import json
import os
import resource
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


KILL_GRACE_SECONDS = 5.0
OUTPUT_TAIL_LINES = 200
READ_BYTES = 1 << 20  # one read of the child's output: big reads, no work per line
# After a small read, wait this long before the next: a child writing line by line then costs
# one read per pause, not one per line (its writes wait in the pipe; a flood gives full reads).
TRICKLE_PAUSE = 0.02
HEAD_BYTES = 1 << 20  # the log keeps this much of the start of the output ...
TAIL_BYTES = 1 << 20  # ... and this much of its end; what lies between is cut, with a note


def _shown_segment(line: str) -> str:
    """What a terminal shows of a line redrawn with \r (a progress bar): its last non-empty segment."""
    return next((segment.strip() for segment in reversed(line.split("\r")) if segment.strip()), "")


class OutputReader(threading.Thread):
    """Drains the child's merged stdout/stderr at a cost that does not grow with what it prints.

    Reads in large chunks and looks at no line as it goes: the head and the tail are kept (the
    log holds both, with a note of what was cut between them), the last line is worked out only
    when the status line asks for it, the tail's lines only at the end. With `stream_to` (a binary
    stream: -v), every chunk is also written there as it comes, whatever that stream is.
    """

    def __init__(self, stream, log_path: str, stream_to=None, head_bytes: int = HEAD_BYTES,
                 tail_bytes: int = TAIL_BYTES):
        super().__init__(daemon=True)
        self.stream = stream
        self.log_path = log_path
        self.stream_to = stream_to
        self.head_bytes = head_bytes
        self.tail_bytes = tail_bytes
        self.total_bytes = 0
        self.total_lines = 0
        self.reads = 0
        self.cut_bytes = 0
        self._head = 0
        self._head_lines = 0
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_size = 0
        self._last = b""  # the end of the output so far, for last_line

    def run(self) -> None:
        with open(self.log_path, "wb") as log:
            while True:
                try:
                    chunk = os.read(self.stream.fileno(), READ_BYTES)
                except OSError:
                    break
                if not chunk:
                    break
                self._take(chunk, log)
                if len(chunk) < READ_BYTES // 4:
                    time.sleep(TRICKLE_PAUSE)
            self._finish(log)

    def _take(self, chunk: bytes, log) -> None:
        self.total_bytes += len(chunk)
        self.total_lines += chunk.count(b"\n")
        self.reads += 1
        if self.stream_to is not None:
            try:
                self.stream_to.write(chunk)
                self.stream_to.flush()
            except (OSError, ValueError):
                self.stream_to = None
        self._last = (self._last + chunk)[-4096:] if len(chunk) < 4096 else chunk[-4096:]
        if self._head < self.head_bytes:
            head = chunk[: self.head_bytes - self._head]
            log.write(head)
            self._head += len(head)
            self._head_lines += head.count(b"\n")
        self._tail.append(chunk)
        self._tail_size += len(chunk)
        while self._tail and self._tail_size - len(self._tail[0]) >= self.tail_bytes:
            self._tail_size -= len(self._tail.popleft())

    def _finish(self, log) -> None:
        data = b"".join(self._tail)
        tail = data[-self.tail_bytes:]
        before = data[-self.tail_bytes - 1:-self.tail_bytes] if len(data) > self.tail_bytes else b"\n"
        start = self.total_bytes - len(tail)  # where the kept tail begins in the whole output
        if start > self._head:  # a gap between head and tail: cut, with a note
            newline = tail.find(b"\n")
            if before != b"\n" and 0 <= newline < len(tail) - 1:  # the kept tail starts at a line
                tail, start = tail[newline + 1:], start + newline + 1
            self.cut_bytes = start - self._head
            cut_lines = max(self.total_lines - self._head_lines - tail.count(b"\n"), 0)
            note = (f"\n[lora-codemod: {self.cut_bytes:,} bytes ({cut_lines:,} lines) of the script's output cut here; "
                    f"the log keeps its first {self._head:,} and its last {len(tail):,} bytes]\n")
            log.write(note.encode())
            log.write(tail)
        else:
            log.write(tail[self._head - start:])
        self._tail.clear()
        self._tail.append(tail)

    @property
    def last_line(self) -> str:
        text = self._last.decode("utf-8", errors="replace")
        for line in reversed(text.split("\n")):
            shown = _shown_segment(line)
            if shown:
                return shown
        return ""

    @property
    def tail(self) -> list[str]:
        """The last lines of the output (as a terminal shows progress bars), once the reader is done."""
        text = b"".join(self._tail).decode("utf-8", errors="replace")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return [line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines[-OUTPUT_TAIL_LINES:]]


class EventWatcher:
    """The live phase from the events directory, reading only what was appended since last time."""

    def __init__(self, events_dir: str):
        self.directory = Path(events_dir)
        self._offsets: dict[Path, int] = {}
        self._pending: dict[Path, bytes] = {}
        self._phase: dict[int, tuple[float, str]] = {}
        self.pids: set[int] = set()

    def poll(self) -> str:
        if self.directory.is_dir():
            for path in self.directory.glob("*.jsonl"):
                self._read(path)
        if not self._phase:
            return ""
        # Rank 0 speaks for the run; other ranks only when rank 0 has said nothing yet.
        if 0 in self._phase:
            return self._phase[0][1]
        return max(self._phase.values())[1]

    def _read(self, path: Path) -> None:
        offset = self._offsets.get(path, 0)
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except OSError:
            return
        if not data:
            return
        self._offsets[path] = offset + len(data)
        data = self._pending.pop(path, b"") + data
        *lines, rest = data.split(b"\n")
        if rest:
            self._pending[path] = rest
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if "pid" in event:
                self.pids.add(int(event["pid"]))
            if event.get("kind") == "phase":
                self._phase[int(event.get("rank", 0))] = (float(event.get("t", 0)), str(event.get("phase", "")))


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
    # CPU seconds: this process while it watched the child, and the child's whole process tree.
    parent_cpu: float = 0.0
    child_cpu: float = 0.0
    output_bytes: int = 0
    output_cut_bytes: int = 0


class StatusSink:
    """What the runner tells the user while the child runs (the terminal UI implements it)."""

    def start(self, label: str) -> None: ...

    def update(self, elapsed: float, phase: str, last_line: str) -> None: ...

    def stop(self) -> None: ...


PIPE_BYTES = 1 << 20
F_SETPIPE_SZ = 1031  # Linux


def _widen_pipe(stream) -> None:
    """A 1 MiB pipe (Linux; 64 KiB by default): a chatty child is read in 16 times fewer reads."""
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", F_SETPIPE_SZ), PIPE_BYTES)
    except (ImportError, OSError, ValueError):
        pass


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(
    command: list[str],
    env: dict[str, str],
    events_dir: str,
    log_path: str,
    timeout: float,
    sink: StatusSink,
    stream_to=None,
    cwd: str | None = None,
) -> ChildOutcome:
    """Run the child to its end; `stream_to` (a binary stream) gets its output as it comes (-v)."""
    started = time.perf_counter()
    cpu_started, children_started = time.process_time(), _children_cpu()
    process = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a timeout stops torchrun and workers alike
    )
    _widen_pipe(process.stdout)
    reader = OutputReader(process.stdout, log_path, stream_to)
    reader.start()
    watcher = EventWatcher(events_dir)
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
            phase = watcher.poll() or phase
            sink.update(elapsed, phase, reader.last_line)
            if elapsed > timeout:
                timed_out = True
                watcher.poll()
                stop_process_tree(process, sorted(watcher.pids - {os.getpid()}))
                break
    except BaseException:
        # Ctrl-C or anything else: never leave training processes behind.
        watcher.poll()
        stop_process_tree(process, sorted(watcher.pids - {os.getpid()}))
        raise
    finally:
        reader.join(timeout=5)
    wall = time.perf_counter() - started
    phase = watcher.poll() or phase
    return ChildOutcome(process.returncode, timed_out, wall, reader.tail, phase,
                        parent_cpu=round(time.process_time() - cpu_started, 3),
                        child_cpu=round(_children_cpu() - children_started, 3),
                        output_bytes=reader.total_bytes, output_cut_bytes=reader.cut_bytes)
