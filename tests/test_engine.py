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
