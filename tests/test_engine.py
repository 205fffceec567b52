"""File handling: atomic writes, modes, refusing to overwrite a changed file, errors."""

from __future__ import annotations

import os
import stat

import pytest

from lora_codemod import engine
from lora_codemod.config import Config
from lora_codemod.engine import process_file, transform_source

BROKEN = b"""\
trainer = Trainer(model=peft_model, args=a)
if args.use_lora:
    model.save_pretrained(d)
"""
BROKEN_WITH_BASE = b"peft_model = get_peft_model(model, cfg)\n" + BROKEN


def test_fixes_and_keeps_mode(tmp_path):
    path = tmp_path / "train.py"
    path.write_bytes(BROKEN_WITH_BASE)
    path.chmod(0o751)
    outcome = process_file(str(path), Config(), write=True)
    assert outcome.written and outcome.result.error is None
    assert b"model_to_save.save_pretrained(d)" in path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o751
    assert [p.name for p in tmp_path.iterdir()] == ["train.py"], "temp file left behind"


def test_noop_file_is_not_written(tmp_path):
    path = tmp_path / "clean.py"
    path.write_bytes(b"trainer = Trainer(model=m)\nif args.use_lora:\n    trainer.model.save_pretrained(d)\n")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    outcome = process_file(str(path), Config(), write=True)
    assert not outcome.written
    assert path.stat().st_mtime_ns == 1_000_000_000


def test_refuses_to_overwrite_a_file_changed_since_read(tmp_path, monkeypatch):
    path = tmp_path / "train.py"
    path.write_bytes(BROKEN_WITH_BASE)
    real = engine.transform_source

    def edit_meanwhile(source, p, config):
        result = real(source, p, config)
        path.write_bytes(BROKEN_WITH_BASE + b"# a user's edit\n")  # someone saves in the editor
        return result

    monkeypatch.setattr(engine, "transform_source", edit_meanwhile)
    outcome = process_file(str(path), Config(), write=True)
    assert not outcome.written
    assert "changed on disk" in outcome.result.error.format()
    assert path.read_bytes().endswith(b"# a user's edit\n")
    assert len(list(tmp_path.iterdir())) == 1


def test_write_through_symlink_replaces_target_not_link(tmp_path):
    real = tmp_path / "real.py"
    real.write_bytes(BROKEN_WITH_BASE)
    link = tmp_path / "link.py"
    link.symlink_to(real)
    assert process_file(str(link), Config(), write=True).written
    assert link.is_symlink()
    assert b"model_to_save" in real.read_bytes()


def test_parse_error_has_path_and_line():
    result = transform_source(b"x = 1\nif args.use_lora:\n    model.save_pretrained(\n", "bad.py")
    assert result.error is not None and not result.changed
    text = result.error.format()
    assert text.startswith("bad.py:") and "cannot parse" in text and "\n" not in text
    assert result.error.line >= 2


def test_tokenizer_error_is_placed_where_python_places_it():
    result = transform_source(b'x = 1\nif args.use_lora:\n    model.save_pretrained("""\n', "bad.py")
    assert result.error is not None
    assert result.error.line == 3 and "unterminated triple-quoted string" in result.error.message


def test_unreadable_file(tmp_path):
    if os.geteuid() == 0:
        # root reads any file: simulate with a directory named like a file instead
        path = tmp_path / "dir.py"
        path.mkdir()
    else:
        path = tmp_path / "secret.py"
        path.write_bytes(BROKEN)
        path.chmod(0)
    outcome = process_file(str(path), Config(), write=True)
    assert outcome.result.error is not None and "cannot read" in outcome.result.error.format()


def test_prefilter_skips_files_without_candidates():
    # no save at all: returned unparsed even though it is not valid Python
    result = transform_source(b"this is not python (", "x.py")
    assert result.error is None and not result.changed and not result.findings


@pytest.mark.parametrize("select,ignore,expect_codes", [
    (None, frozenset(), {"LC001", "LC002"}),
    (frozenset({"LC002"}), frozenset(), {"LC002"}),
    (None, frozenset({"LC002"}), {"LC001"}),
])
def test_select_and_ignore(select, ignore, expect_codes):
    source = b"import os\nrank = os.environ['LOCAL_RANK']\n" + BROKEN_WITH_BASE
    result = transform_source(source, "x.py", Config(select=select, ignore=ignore))
    assert {f.code for f in result.findings} == expect_codes
    assert (b"is_world_process_zero" in result.output) == ("LC002" in expect_codes)
    assert (b"model_to_save" in result.output) == ("LC001" in expect_codes)


def test_bad_flag_pattern_is_a_value_error():
    with pytest.raises(ValueError, match="flag-pattern"):
        Config(flag_pattern="(")


def test_guard_reindents_continuation_lines_but_not_string_contents():
    source = (
        b'import os\nrank = os.environ["RANK"]\ntrainer = Trainer(model=m)\n'
        b"if args.use_lora:\n"
        b"    trainer.model.save_pretrained(\n        d,\n    )\n"
        b'    note = """\n  kept as is\n"""\n'
        b"    total = 1 + \\\n        2\n"
    )
    result = transform_source(source, "t.py")
    assert result.output.endswith(
        b"if trainer.is_world_process_zero():\n"
        b"    if args.use_lora:\n"
        b"        trainer.model.save_pretrained(\n            d,\n        )\n"
        b'        note = """\n  kept as is\n"""\n'
        b"        total = 1 + \\\n            2\n"
    )


# ---- atomic writes under failure -----------------------------------------------------------------


def test_interrupt_during_the_write_removes_the_temp_file_and_keeps_the_original(tmp_path, monkeypatch):
    path = tmp_path / "train.py"
    path.write_bytes(BROKEN_WITH_BASE)

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        process_file(str(path), Config(), write=True)
    assert path.read_bytes() == BROKEN_WITH_BASE
    assert [p.name for p in tmp_path.iterdir()] == ["train.py"]


def test_a_rewrite_that_does_not_compile_is_never_written(tmp_path, monkeypatch):
    import libcst as cst

    from lora_codemod import plan

    class Broken(plan.PlanApplier):  # stands for a bug of ours: adds a module-level `return`
        def leave_Module(self, original, updated):
            updated = super().leave_Module(original, updated) if hasattr(super(), "leave_Module") else updated
            return updated.with_changes(body=[*updated.body, cst.parse_statement("return 1\n")])

    monkeypatch.setattr(plan, "PlanApplier", Broken)
    path = tmp_path / "train.py"
    path.write_bytes(BROKEN_WITH_BASE)
    outcome = process_file(str(path), Config(), write=True)
    assert not outcome.written and path.read_bytes() == BROKEN_WITH_BASE
    assert outcome.result.error.format().startswith(
        f"{path}: error: internal error: the rewrite does not compile ('return' outside function")
    assert [p.name for p in tmp_path.iterdir()] == ["train.py"]


def test_a_crash_of_ours_is_an_error_for_that_file_only(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_bytes(BROKEN_WITH_BASE)
    (tmp_path / "b.py").write_bytes(BROKEN_WITH_BASE)
    real = engine.transform_source

    def crash_on_a(source, path, config):
        if path.endswith("a.py"):
            raise AttributeError("'NoneType' object has no attribute 'body'")
        return real(source, path, config)

    monkeypatch.setattr(engine, "transform_source", crash_on_a)
    outcomes = list(engine.run_files([str(tmp_path / "a.py"), str(tmp_path / "b.py")], Config(), write=True, jobs=1))
    assert outcomes[0].result.error.format() == (
        f"{tmp_path / 'a.py'}: error: internal error (AttributeError: 'NoneType' object has no attribute 'body'); "
        "left unchanged, please report this file")
    assert (tmp_path / "a.py").read_bytes() == BROKEN_WITH_BASE
    assert outcomes[1].written


def test_changed_on_disk_exits_2_from_the_cli(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from lora_codemod.cli import cli

    path = tmp_path / "train.py"
    path.write_bytes(BROKEN_WITH_BASE)
    real = engine.transform_source

    def edit_meanwhile(source, p, config):
        result = real(source, p, config)
        path.write_bytes(BROKEN_WITH_BASE + b"# the user's edit\n")
        return result

    monkeypatch.setattr(engine, "transform_source", edit_meanwhile)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["fix", "-j", "1", "train.py"], catch_exceptions=False)
    assert result.exit_code == 2
    assert "train.py: error: changed on disk while it was being fixed; not overwritten (run again)" in result.output
    assert path.read_bytes().endswith(b"# the user's edit\n")


# ---- the parallel engine ---------------------------------------------------------------------------


def _tree(tmp_path, n_broken=6, n_clean=20):
    for i in range(n_clean):
        (tmp_path / f"clean_{i:02}.py").write_bytes(b"print(%d)\n" % i)
    for i in range(n_broken):
        (tmp_path / f"train_{i:02}.py").write_bytes(BROKEN_WITH_BASE + b"# %d\n" % i)
    (tmp_path / "bad.py").write_bytes(b"if args.use_lora:\n    model.save_pretrained(\n")
    return sorted(str(p) for p in tmp_path.iterdir())


def _summary(outcomes):
    return [(o.result.path, o.result.changed, o.written, o.result.output,
             [f.format() for f in o.result.findings], o.result.error and o.result.error.format()) for o in outcomes]


def test_pool_and_in_process_give_the_same_results_in_the_same_order(tmp_path):
    paths = _tree(tmp_path)
    serial = _summary(engine.run_files(paths, Config(), write=False, jobs=1))
    parallel = _summary(engine.run_files(paths, Config(), write=False, jobs=2))
    assert [s[0] for s in serial] == paths
    assert parallel == serial
    assert sum(s[1] for s in serial) == 6 and sum(s[5] is not None for s in serial) == 1


def test_pool_writes_every_changed_file(tmp_path):
    paths = _tree(tmp_path)
    outcomes = list(engine.run_files(paths, Config(), write=True, jobs=2))
    assert sum(o.written for o in outcomes) == 6
    for i in range(6):
        data = (tmp_path / f"train_{i:02}.py").read_bytes()
        assert b"model_to_save.save_pretrained(d)" in data and data.endswith(b"# %d\n" % i)
    assert len(list(tmp_path.iterdir())) == len(paths), "temp file left behind"


def test_pool_starts_only_when_two_files_need_parsing(tmp_path, monkeypatch):
    started = []
    real = engine._start_pool
    monkeypatch.setattr(engine, "_start_pool", lambda jobs: started.append(jobs) or real(jobs))
    paths = _tree(tmp_path, n_broken=1)  # one broken file; bad.py passes the text stage too
    list(engine.run_files([p for p in paths if not p.endswith("bad.py")], Config(), write=False, jobs=2))
    assert started == []
    list(engine.run_files(paths, Config(), write=False, jobs=2))
    assert started == [2]


def test_progress_counts(tmp_path):
    paths = _tree(tmp_path)
    seen = []
    list(engine.run_files(paths, Config(), write=False, jobs=2, on_progress=lambda p: seen.append(vars(p).copy())))
    assert seen[-1] == {"scanned": len(paths), "parsed": 7, "cached": 0, "changed": 6, "errors": 1,
                        "total": len(paths)}


def _run_python(code: str, cwd) -> str:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_a_run_that_parses_nothing_never_imports_libcst_and_help_imports_little(tmp_path):
    (tmp_path / "clean.py").write_bytes(b"print('no adapter here')\n")
    code = (
        "import sys\nfrom lora_codemod.cli import cli\n"
        "try:\n    cli([{args}], prog_name='lora-codemod')\nexcept SystemExit:\n    pass\n"
        "heavy = ['libcst', 'multiprocessing', 'concurrent.futures', 'rich', 'torch', 'tempfile']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    assert _run_python(code.format(args="'fix', '.'"), tmp_path).splitlines()[-1] == "[]"
    assert _run_python(code.format(args="'fix', '--check', '-j', '2', '.'"), tmp_path).splitlines()[-1] == "[]"
    assert _run_python(code.format(args="'--help'"), tmp_path).splitlines()[-1] == "[]"


def test_progress_bar_on_a_terminal_only(tmp_path):
    """Through a pseudo-terminal the bar is drawn on stderr (and erased); piped, nothing of it."""
    import pty
    import subprocess
    import sys

    for i in range(3000):
        (tmp_path / f"m_{i:04}.py").write_bytes(b"x = 1\n" * 200)
    for i in range(12):
        (tmp_path / f"t_{i:02}.py").write_bytes(BROKEN_WITH_BASE)
    command = [sys.executable, "-m", "lora_codemod", "fix", "--check", "-j", "2", "."]

    master, slave = pty.openpty()
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO once the child has closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=120)
    os.close(master)
    on_terminal = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 1
    assert "scanned" in on_terminal and "parsed" in on_terminal and "changed" in on_terminal

    piped = subprocess.run(command, cwd=tmp_path, capture_output=True)
    assert piped.returncode == 1 and piped.stderr == b""
    assert piped.stdout.decode().splitlines()[-1].endswith("(3012 files checked).")
