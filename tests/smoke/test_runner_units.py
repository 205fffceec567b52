"""Fast checks of the runner's parts: events, run checks, output handling, CLI guards."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lora_codemod.findings import SourceError, SourceResult
from lora_codemod.smoke import commands
from lora_codemod.smoke.device import plan_launch
from lora_codemod.smoke.launch import OutputReader
from lora_codemod.smoke.child.records import collect_saves, latest_phase, read_events
from lora_codemod.smoke.runner import substitute
from lora_codemod.smoke.verdict import FixSummary, SmokeRun, run_checks
from lora_codemod.smoke.child.verify import FAIL, PASS

from .conftest import FIXTURE_SCRIPTS, REPO, run_cli


def _write_events(directory, rank, events):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"rank{rank}-pid{100 + rank}.jsonl", "w") as handle:
        for t, event in enumerate(events):
            handle.write(json.dumps({"rank": rank, "pid": 100 + rank, "t": t, **event}) + "\n")
        handle.write('{"kind": "phase", "phase": "half-writt')  # a line being written: ignored


def _save(rank, number, directory, writes=True, api="save_pretrained", parent=None):
    return {"kind": "save", "id": f"{rank}-{100 + rank}-{number}", "api": api, "class": "peft.PeftModel",
            "model_kind": "peft", "dir": str(directory), "writes": writes, "parent": parent,
            "via": "save_model" if parent else None}


def _run(tmp_path, nproc, events_dir):
    run = SmokeRun(label="patched", script="train.py", plan=plan_launch("cpu", nproc, False, 0), command=[],
                   output_dir=str(tmp_path / "out"), adapter_dir=str(tmp_path / "out" / "lora_adapters"),
                   fix=FixSummary(applied=True), exit_code=0)
    events = read_events(str(events_dir))
    run.saves = collect_saves(events)
    run.process_groups = [e for e in events if e["kind"] == "process_group"]
    return run


def test_two_ranks_writing_the_adapter_fail(tmp_path):
    adapter = tmp_path / "out" / "lora_adapters"
    for rank in (0, 1):
        _write_events(tmp_path / "ev", rank, [
            {"kind": "process_group", "backend": "gloo", "world_size": 2},
            _save(rank, 1, adapter),
        ])
    run = _run(tmp_path, 2, tmp_path / "ev")
    assert run.adapter_writers() == [0, 1]
    statuses = {c.name: c.status for c in run_checks(run)}
    assert statuses == {"ranks joined one process group": PASS, "one rank writes the adapter": FAIL}


def test_non_writing_calls_do_not_count(tmp_path):
    adapter = tmp_path / "out" / "lora_adapters"
    _write_events(tmp_path / "ev", 0, [{"kind": "process_group", "backend": "gloo", "world_size": 2},
                                       _save(0, 1, adapter)])
    # Rank 1 calls save_model (not the main process) and save_pretrained(is_main_process=False).
    _write_events(tmp_path / "ev", 1, [{"kind": "process_group", "backend": "gloo", "world_size": 2},
                                       _save(1, 1, tmp_path / "out", writes=False, api="save_model"),
                                       _save(1, 2, adapter, writes=False)])
    run = _run(tmp_path, 2, tmp_path / "ev")
    assert run.adapter_writers() == [0]
    assert all(c.status == PASS for c in run_checks(run))


def test_nested_save_is_marked_and_not_counted_twice(tmp_path):
    out = tmp_path / "out"
    _write_events(tmp_path / "ev", 0, [
        _save(0, 1, out, api="save_model"),
        _save(0, 2, out, parent="0-100-1"),
        {"kind": "save_end", "id": "0-100-2", "ok": True, "error": None},
        {"kind": "save_end", "id": "0-100-1", "ok": True, "error": None},
        {"kind": "phase", "phase": "saving (save_model)"},
    ])
    saves = collect_saves(read_events(str(tmp_path / "ev")))
    assert [(s.api, s.via, s.finished) for s in saves] == [("save_model", None, True), ("save_pretrained", "save_model", True)]
    assert latest_phase(read_events(str(tmp_path / "ev"))) == "saving (save_model)"


def test_a_shared_checkpoint_directory_is_flagged(tmp_path):
    shared = tmp_path / "out" / "checkpoint-2"
    for rank in (0, 1):
        _write_events(tmp_path / "ev", rank, [
            {"kind": "process_group", "backend": "gloo", "world_size": 2},
            _save(rank, 1, shared),
        ])
    checks = {c.name: c for c in run_checks(_run(tmp_path, 2, tmp_path / "ev"))}
    assert checks["one writer per directory"].status == FAIL
    assert "ranks 0, 1" in checks["one writer per directory"].detail


def test_ranks_that_never_joined_a_group_are_a_warning(tmp_path):
    _write_events(tmp_path / "ev", 0, [_save(0, 1, tmp_path / "out" / "lora_adapters")])
    _write_events(tmp_path / "ev", 1, [])
    checks = {c.name: c.status for c in run_checks(_run(tmp_path, 2, tmp_path / "ev"))}
    assert checks["ranks joined one process group"] == "warn"


def test_substitute_leaves_other_braces_alone():
    values = {"{output_dir}": "/tmp/o", "{tiny_model}": "/tmp/m"}
    assert substitute('{"a": 1} {output_dir}/x {tiny_model}', values) == '{"a": 1} /tmp/o/x /tmp/m'


def test_output_reader_keeps_lines_and_the_last_progress_segment(tmp_path):
    import io

    read_end, write_end = os.pipe()
    streamed = io.BytesIO()
    reader = OutputReader(os.fdopen(read_end, "rb"), str(tmp_path / "log"), streamed)
    reader.start()
    output = b"first line\n 10%|#   \r 50%|#####  \r100%|##########\nlast"
    os.write(write_end, output)
    os.close(write_end)
    reader.join(timeout=5)
    assert reader.tail == ["first line", "100%|##########", "last"]
    assert reader.last_line == "last"
    assert streamed.getvalue() == output  # -v: the bytes as they came
    assert (tmp_path / "log").read_bytes() == output  # nothing cut: the log is the output


def test_importing_the_commands_does_not_import_torch():
    code = "import sys, lora_codemod.smoke.commands; print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert output.strip() == "[]"


def test_missing_extra_is_one_line_and_exit_2(monkeypatch, tmp_path):
    monkeypatch.setattr(commands, "missing_smoke_modules", lambda: ["peft"])
    for command, args in ((commands.verify, [str(tmp_path)]), (commands.tiny_model, [str(tmp_path / "m")]),
                          (commands.smoke, [str(FIXTURE_SCRIPTS / "train_single.py")])):
        code, _, stderr = run_cli(command, args)
        assert code == 2
        assert stderr.strip().splitlines() == ['error: the smoke extra is not installed (missing peft): pip install "lora-codemod[smoke]"']


def test_fix_error_is_reported_and_nothing_runs(monkeypatch, tmp_path):
    import lora_codemod.engine

    def failing_transform(source, path="<stdin>", config=None):
        return SourceResult(path=path, source=source, output=source,
                            error=SourceError(path, "invalid syntax", line=3, col=7))

    monkeypatch.setattr(lora_codemod.engine, "transform_source", failing_transform)
    script = tmp_path / "train.py"
    script.write_text("raise SystemExit('this must not run')\n")
    code, _, stderr = run_cli(commands.smoke, [str(script), "--device", "cpu"])
    assert code == 2
    assert stderr.strip() == f"{script}:3:7: error: invalid syntax"


@pytest.mark.parametrize("args, message", [
    (["--no-fix", "--compare"], "--no-fix and --compare exclude each other"),
    (["--timeout", "0"], "--timeout must be positive"),
    (["--nproc", "0", "--device", "cpu"], "--nproc must be 1 or more, not 0"),
])
def test_usage_errors_exit_2(args, message):
    code, _, stderr = run_cli(commands.smoke, [str(FIXTURE_SCRIPTS / "train_single.py"), *args])
    assert code == 2 and stderr.strip() == f"error: {message}"


def test_missing_script_exits_2(tmp_path):
    code, _, stderr = run_cli(commands.smoke, [str(tmp_path / "nope.py")])
    assert code == 2 and "no such file" in stderr


def test_the_childs_verification_is_used_only_for_the_directory_and_base_the_parent_chose(tmp_path):
    from lora_codemod.smoke.child.records import child_verify
    from lora_codemod.smoke.child.verify import VerifyResult

    adapter = str(tmp_path / "out" / "lora_adapters")
    result = VerifyResult(adapter)
    result.add("adapter_config.json", PASS, "parses", "LORA, r=4")
    events = [{"kind": "verify", "rank": 0, "dir": adapter, "base_model": "/m", "result": result.as_dict()}]
    found = child_verify(events, adapter + "/", "/m")
    assert found is not None and found.as_dict() == result.as_dict()
    assert child_verify(events, str(tmp_path / "out"), "/m") is None  # another directory: the parent verifies
    assert child_verify(events, adapter, None) is None  # another base model
    assert child_verify([], adapter, "/m") is None
