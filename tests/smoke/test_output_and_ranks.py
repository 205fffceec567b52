"""Chatty children and rank failures under torchrun.

A script that prints a lot costs the parent little: its output is read in large chunks after a
pause when it trickles (a line at a time would wake the parent once per line), the log keeps the
head and the tail with a note of what was cut, and -v streams the output to stderr, piped too.
Under torchrun, the verdict names the first rank that failed and shows its own traceback (or the
end of its own log when it died without one), not torchrun's summary.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import pytest

from lora_codemod.smoke import launch
from lora_codemod.smoke.commands import smoke

from .conftest import run_cli

LINES = 200_000
CHATTY = f"""
for i in range({LINES}):
    print(f"line {{i:07d}} " + "y" * 100)
print("the very last line")
"""


def _read_script_output(tmp_path, pause: float, monkeypatch) -> launch.OutputReader:
    script = tmp_path / "lines.py"
    script.write_text(CHATTY)
    monkeypatch.setattr(launch, "TRICKLE_PAUSE", pause)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    launch._widen_pipe(process.stdout)
    reader = launch.OutputReader(process.stdout, str(tmp_path / f"log-{pause}"))
    reader.start()
    reader.join(timeout=120)
    process.wait()
    return reader


def test_a_script_printing_line_by_line_is_read_in_few_large_reads(tmp_path, monkeypatch):
    paced = _read_script_output(tmp_path, launch.TRICKLE_PAUSE, monkeypatch)
    assert paced.total_lines == LINES + 1 and paced.tail[-1] == "the very last line"
    assert paced.reads <= LINES / 100, paced.reads
    # Control: reading again as soon as anything arrives wakes the parent for (nearly) every line.
    eager = _read_script_output(tmp_path, 0.0, monkeypatch)
    assert eager.total_lines == LINES + 1
    assert eager.reads >= 10 * paced.reads, (eager.reads, paced.reads)


def test_the_log_keeps_head_and_tail_with_a_note_of_what_was_cut(tmp_path):
    read_end, write_end = os.pipe()
    reader = launch.OutputReader(os.fdopen(read_end, "rb"), str(tmp_path / "log"), head_bytes=1000, tail_bytes=1000)
    reader.start()
    lines = [f"line {i:05d} " + "z" * 38 + "\n" for i in range(2000)]  # 50 bytes each, 100,000 in all
    with os.fdopen(write_end, "wb") as writer:
        for line in lines:
            writer.write(line.encode())
    reader.join(timeout=10)
    log = (tmp_path / "log").read_text()
    head, note, tail = log.split("\n[lora-codemod: ")[0], log.split("\n[lora-codemod: ")[1].split("]\n")[0], log.split("]\n", 1)[1]
    assert "".join(lines).startswith(head) and len(head) == 1000
    assert tail == "".join(lines[-20:])  # the last 1,000 bytes, from a line's start
    assert note == f"{100_000 - 2000:,} bytes (1,960 lines) of the script's output cut here; the log keeps its first 1,000 and its last 1,000 bytes"
    assert reader.cut_bytes == 98_000 and reader.tail[-1] == lines[-1].rstrip("\n")
    # Control: output that fits is kept whole, with no note.
    read_end, write_end = os.pipe()
    small = launch.OutputReader(os.fdopen(read_end, "rb"), str(tmp_path / "small"), head_bytes=1000, tail_bytes=1000)
    small.start()
    os.write(write_end, "".join(lines[:30]).encode())
    os.close(write_end)
    small.join(timeout=10)
    assert (tmp_path / "small").read_text() == "".join(lines[:30]) and small.cut_bytes == 0


def test_a_chatty_script_under_smoke_costs_the_parent_a_fraction_of_the_child(tmp_path, monkeypatch):
    script = tmp_path / "chatty.py"
    script.write_text(CHATTY)
    monkeypatch.chdir(tmp_path)
    code, parsed, _ = run_cli(smoke, [str(script), "--no-fix", "--device", "cpu", "--json", "--keep"])
    run = parsed["runs"][0]
    assert run["exit_code"] == 0
    assert run["output_bytes"] == sum(len(f"line {i:07d} ") + 101 for i in range(LINES)) + len("the very last line\n")
    assert run["output_cut_bytes"] > 0 and run["output_tail"][-1] == "the very last line"
    with open(run["log"], "rb") as handle:
        log = handle.read()
    assert log.startswith(b"line 0000000 ") and log.endswith(b"the very last line\n")
    assert b"of the script's output cut here" in log and len(log) < 3 * launch.HEAD_BYTES
    timings = run["timings"]
    # CPU time, not wall time: the parent's share of the child's (bench/smoke_bench.py --only chatty
    # measures it at 100 MB; the goal there is 10%, this bound only catches per-line work).
    assert timings["parent cpu"] < 0.5 * timings["child cpu"], timings


def test_verbose_streams_the_output_when_piped(tmp_path):
    script = tmp_path / "talk.py"
    script.write_text("for i in range(3):\n    print(f'step {i} of the training')\n")
    code, _, stderr = run_cli(smoke, [str(script), "--no-fix", "--device", "cpu", "-v"])
    assert code == 1  # it saves nothing: no adapter
    assert "step 0 of the training\nstep 1 of the training\nstep 2 of the training\n" in stderr
    assert "unpatched run of talk.py: the script's output follows" in stderr
    # Control: without -v, nothing of it reaches stderr (the report shows no output for a run that did not crash).
    code, _, stderr = run_cli(smoke, [str(script), "--no-fix", "--device", "cpu"])
    assert "step 0 of the training" not in stderr


RANK_FAILS = """
import os, time
rank = int(os.environ.get("RANK", "0"))
print(f"rank {rank} starting", flush=True)

def load_shard(r):
    raise ValueError(f"shard {r} is corrupt")

if rank == 0:
    time.sleep(2.0)
    raise RuntimeError("rank 0 gave up waiting for rank 1")
load_shard(rank)
"""

RANK_KILLED = """
import os, signal, sys, time
rank = int(os.environ.get("RANK", "0"))
if rank == 1:
    print("rank 1: loading the audio codec, out of memory", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(5)
"""


@pytest.fixture(scope="module")
def rank_runs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ranks")
    results = {}
    for name, code in (("fails", RANK_FAILS), ("killed", RANK_KILLED)):
        script = directory / f"rank_{name}.py"
        script.write_text(textwrap.dedent(code))
        _, parsed, _ = run_cli(smoke, [str(script), "--no-fix", "--nproc", "2", "--device", "cpu", "--json"])
        results[name] = parsed["runs"][0]
    return results


def test_the_first_failing_rank_and_its_own_traceback(rank_runs):
    run = rank_runs["fails"]
    assert run["exit_code"] == 1
    assert run["verdict"] == "CRASHED: the script exited with code 1: rank 1: ValueError: shard 1 is corrupt"
    exception = run["exception"]
    assert exception["rank"] == 1
    assert 'in load_shard\n    raise ValueError(f"shard {r} is corrupt")' in exception["traceback"]
    assert exception["traceback"].rstrip().endswith("ValueError: shard 1 is corrupt")
    # rank 0 failed too, later: that is not the cause.
    assert "RuntimeError: rank 0 gave up" not in exception["traceback"]


def test_crash_lines_show_the_rank_traceback_not_torchruns_summary(rank_runs):
    from rich.console import Console

    from lora_codemod.smoke.device import plan_launch
    from lora_codemod.smoke.report import crash_lines
    from lora_codemod.smoke.verdict import FixSummary, SmokeRun

    data = rank_runs["fails"]
    run = SmokeRun(label="unpatched", script="rank_fails.py", plan=plan_launch("cpu", 2, False, 0), command=[],
                   output_dir="/o", adapter_dir="/o", fix=FixSummary(applied=False), exit_code=1,
                   output_tail=data["output_tail"], exception=data["exception"])
    console = Console(file=io.StringIO(), width=200)
    for line in crash_lines(run):
        console.print(line)
    shown = console.file.getvalue()
    assert shown.startswith("traceback of rank 1 (the first rank to fail):\n")
    assert "ValueError: shard 1 is corrupt" in shown and "ChildFailedError" not in shown
    # Control: without the rank's traceback the same run shows the merged output's end: torchrun's summary.
    run.exception = None
    console = Console(file=io.StringIO(), width=200)
    for line in crash_lines(run):
        console.print(line)
    assert console.file.getvalue().startswith("last lines of the script's output:")
    assert "=====" in console.file.getvalue()


def test_torchruns_summary_names_the_rank_and_our_error_file_gives_it_the_traceback(rank_runs):
    tail = "\n".join(rank_runs["fails"]["output_tail"])
    root = tail.split("Root Cause (first observed failure):", 1)[1]
    assert "rank      : 1 (local_rank: 1)" in root
    assert "shard 1 is corrupt" in root  # written to TORCHELASTIC_ERROR_FILE by the child
    # Control: a rank that died without a Python exception has no error file: torchrun links to its docs.
    killed = "\n".join(rank_runs["killed"]["output_tail"]).split("Root Cause (first observed failure):", 1)[1]
    assert "error_file: <N/A>" in killed


def test_a_rank_killed_without_a_traceback_is_named_with_the_end_of_its_own_log(rank_runs):
    run = rank_runs["killed"]
    assert run["exception"] is None
    failure = run["rank_failure"]
    assert failure["rank"] == 1 and failure["exit"].startswith("-9")
    assert failure["from"] == "its own log (stderr.log)"
    assert failure["lines"] == ["rank 1: loading the audio codec, out of memory"]
    assert run["verdict"].startswith("CRASHED: the script exited with code 1: rank 1 failed first with exit code -9")


RETRIES = """
def load(index, tries=0):
    try:
        input_tokens, label_tokens, audio, labels, _ = (1, 2, 3, 4)  # the package now returns four
        return input_tokens
    except Exception:
        return load(index + 1, tries + 1)  # the next sample, as a tolerant dataset does

load(0)
"""


def test_a_crash_that_began_as_another_exception_says_what_it_began_as(tmp_path):
    script = tmp_path / "retries.py"
    script.write_text(RETRIES)
    code, parsed, _ = run_cli(smoke, [str(script), "--no-fix", "--device", "cpu", "--json"])
    run = parsed["runs"][0]
    assert code == 2 and run["exception"]["type"] == "RecursionError"
    began = run["exception"]["began_as"]
    assert (began["type"], began["message"], began["where"]) == (
        "ValueError", "not enough values to unpack (expected 5, got 4)", f"{script}:4")
    assert run["verdict"].endswith("(it began as ValueError: not enough values to unpack (expected 5, got 4), at "
                                   "retries.py:4; each exception after it was raised while handling the one before)")
    traceback = run["exception"]["traceback"]
    assert "characters of the traceback cut" in traceback  # its start (the first failure) and its end are kept
    assert traceback.startswith("Traceback (most recent call last):") and "ValueError: not enough values" in traceback[:3000]
    assert traceback.rstrip().endswith("RecursionError: maximum recursion depth exceeded")
    # Control: a plain exception began as itself.
    script.write_text("raise KeyError('audio_file')\n")
    _, parsed, _ = run_cli(smoke, [str(script), "--no-fix", "--device", "cpu", "--json"])
    assert "began_as" not in parsed["runs"][0]["exception"] or parsed["runs"][0]["exception"]["began_as"] is None
    assert parsed["runs"][0]["verdict"] == "CRASHED: the script exited with code 1: KeyError: 'audio_file'"
