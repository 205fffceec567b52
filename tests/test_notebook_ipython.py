"""Notebook cells follow IPython's rules for what is not Python (lora_codemod/ipython.py).

Three layers: what IPython 9 itself does with ~1,600 cells (recorded by
tests/data/make_ipython_reference.py, so no IPython is needed here); each form as IPython's
documentation describes it; and whole notebooks, where every IPython form is kept byte-for-byte
and the Python around it is still analysed and fixed.
"""

from __future__ import annotations

import json
from pathlib import Path

import libcst as cst
import pytest
from click.testing import CliRunner

from lora_codemod.cli import cli
from lora_codemod.ipython import PYTHON_CELL_MAGICS, Special, cell_syntax
from lora_codemod.notebook import _Cell, _module, _split, code_cells

REFERENCE = Path(__file__).parent / "data" / "ipython_reference.json"


def specials_of(text: str) -> list[tuple[int, int, str]]:
    return [(s.first, s.last, s.kind) for s in cell_syntax(text.splitlines()).specials]


def parses(text: str) -> bool:
    module, _ = _module([_Cell(0, 0, 0, text)])
    try:
        cst.parse_module(module)
        compile(module, "<cell>", "exec", dont_inherit=True)
    except (cst.ParserSyntaxError, SyntaxError, ValueError):
        return False
    return True


# -- 1. what IPython itself does ---------------------------------------------------------------

def test_agrees_with_ipython_on_every_recorded_cell():
    """For each cell: valid for IPython exactly when valid here, and the lines IPython rewrites
    are the lines kept out of the analysis. Two deliberate differences: an assignment from a
    shell command or magic is kept whole from its first line (IPython keeps the target's text
    and rewrites only the line of the `=`), and a prompt-pasted cell is kept whole, not analysed,
    valid or not."""
    document = json.loads(REFERENCE.read_text())
    assert document["ipython"].split(".")[0] >= "9" and len(document["cells"]) >= 1500
    problems = []
    for entry in document["cells"]:
        cell = entry["cell"]
        specials = cell_syntax(cell.splitlines()).specials
        mine = {k for s in specials for k in range(s.first, s.last + 1)}
        if "prompts" in entry["notes"]:
            if "prompts" not in [s.kind for s in specials] or set(entry["lines"]) - mine:
                problems.append(f"prompts not kept whole: {cell!r}")
            continue
        valid = parses(cell)
        if valid != entry["compiles"]:
            problems.append(f"valid here {valid}, for IPython {entry['compiles']}: {cell!r}")
            continue
        if not valid or ("indented" in entry["notes"] and not any("cell magic" in n for n in entry["notes"])):
            continue  # nothing to compare: invalid, or IPython's dedent rewrote every line
        theirs = set(entry["lines"])
        extra = {k for k in mine - theirs
                 if not any(s.kind == "assignment" and s.first <= k <= s.last and theirs & set(range(s.first, s.last + 1))
                            for s in specials)}
        if theirs - mine or extra:
            problems.append(f"lines here {sorted(mine)}, IPython {sorted(theirs)}: {cell!r}")
    assert not problems, "\n".join(problems[:20])


# -- 2. each form, as IPython documents it ------------------------------------------------------

@pytest.mark.parametrize("cell, expected", [
    # `!cmd` runs a shell command, `!!cmd` captures its output; a backslash continues the line.
    ("!pip install peft", [(0, 0, "shell")]),
    ("!!ls -l", [(0, 0, "shell")]),
    ("! python preprocess.py --data_dir data \\\n    --output_dir out \\\n    --max_seq_length 128\nprint(1)",
     [(0, 2, "shell")]),
    ("if ok:\n    !ls -a \\\n      -l\n    x = 1", [(1, 2, "shell")]),
    # `%magic` is a line magic, wherever a statement may start; `%%` only opens a cell.
    ("%pip install -q peft\n%env A=1  # a comment is the magic's too", [(0, 0, "magic"), (1, 1, "magic")]),
    ("for f in fs:\n    %time run(f)", [(1, 1, "magic")]),
    # `?`/`??` before or after a (dotted) name asks for help.
    ("obj?\nobj.attr??\n?obj\n??obj\n%timeit?\n*int*?",
     [(0, 0, "help"), (1, 1, "help"), (2, 2, "help"), (3, 3, "help"), (4, 4, "magic"), (5, 5, "help")]),
    # Assignments from a shell command or a line magic.
    ("files = !ls\nx = %env HOME\na, b = !echo 1 2\nd['k'] = !pwd",
     [(0, 0, "assignment"), (1, 1, "assignment"), (2, 2, "assignment"), (3, 3, "assignment")]),
    ("files = !ls -l \\\n   -a", [(0, 1, "assignment")]),
    # The autocall escapes: `/f a b` is f(a, b), `,f a b` f("a", "b"), `;f a b` f("a b").
    ("/print 1 2\n,print a b\n;print a b", [(0, 0, "autocall"), (1, 1, "autocall"), (2, 2, "autocall")]),
    # Cell magics: the execution magics run their body as IPython code; the others do not.
    ("%%time\nx = 1\n!ls", [(0, 0, "cell magic"), (2, 2, "shell")]),
    ("%%capture out\n%%time\nx = 1", [(0, 0, "cell magic"), (1, 1, "cell magic")]),
    ("%%bash\nls\necho 'unbalanced", [(0, 2, "cell magic")]),
    ("%%writefile train.py\nimport os", [(0, 1, "cell magic")]),
    ("\n\n%%bash\nls", [(2, 3, "cell magic")]),  # leading blank lines are dropped first
    # Pasted sessions: IPython strips `>>> ` and `In [1]: ` prompts; kept whole here.
    (">>> x = 1\n>>> y = 2", [(0, 1, "prompts")]),
    ("In [1]: x = 1", [(0, 0, "prompts")]),
    # Python, whatever it looks like.
    ("get_ipython().system('ls')\nget_ipython().run_line_magic('pip', 'install peft')", []),
    ("x = 1  # what?\ns = 'what?'\nv = a != b\nq = '''\n!not a command\nwho?\n'''", []),
    ("x = f'{a!r}'\ny = x == !z", []),  # the second line is not an assignment: invalid, as for IPython
    ("", []), ("# only\n# comments", []),
])
def test_ipython_forms(cell, expected):
    assert specials_of(cell) == expected


def test_python_cell_magics_are_the_execution_magics():
    assert PYTHON_CELL_MAGICS == {"time", "timeit", "capture", "prun", "debug"}


@pytest.mark.parametrize("cell, valid", [
    ("  x = 1\n  y = 2", True),  # IPython removes the common indentation
    ("  \n  x = 1", True),
    ("  # comment\n  x = 1", True),
    ("  x = 1\ny = 2", False),  # no common indentation: the first line is an unexpected indent
    ("  # comment\n    x = 1", False),  # the comment sets the margin: still indented after it
    ("  x = 1\n    y = 2", False),
    ("x = (1,\n  2 3)", False),  # genuinely not Python
    ("print('a')?", False),  # help on something that is not a name: IPython fails too
    ("lambda x=!ls: x", False),  # IPython makes code that does not compile
    ("if a:\n    pass\n  !ls", False),
])
def test_validity_like_ipython(cell, valid):
    assert parses(cell) is valid


def test_an_indented_cell_is_analysed_without_moving_a_column():
    module, layouts = _module([_Cell(0, 0, 0, "  x = 1\n  y = 2")])
    assert module.splitlines()[1:] == ["if True:  # lora-codemod: indented cell", "  x = 1", "  y = 2"]
    assert layouts[0].where == [None, 0, 1]


# -- 3. whole notebooks --------------------------------------------------------------------------

def code(source):
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}


def notebook(cells) -> bytes:
    doc = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# LoRA"]}, *cells],
           "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}
    return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode()


SETUP = code(["peft_model = get_peft_model(model, lora_config)\n",
              "trainer = Trainer(model=peft_model, args=training_args)\n", "trainer.train()"])
SAVE = code(["if args.use_lora:\n", "    model.save_pretrained(\"out\")"])
UNWRAP = "model_to_save = trainer.model.module if hasattr(trainer.model, \"module\") else trainer.model"
FIXED = ["if args.use_lora:\n", f"    {UNWRAP}\n", "    model_to_save.save_pretrained(\"out\")"]


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def fix(tmp_path, monkeypatch, cells):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "nb.ipynb"
    path.write_bytes(notebook(cells))
    before = path.read_bytes()
    result = invoke("fix", "nb.ipynb")
    return before, path.read_bytes(), result


def assert_only_cell_changed(before: bytes, after: bytes, index: int, source: list[str]) -> None:
    """Cell `index` (0-based, markdown first) now has `source`; every other byte is the same."""
    old, new = json.loads(before), json.loads(after)
    assert new["cells"][index]["source"] == source
    old_text = json.dumps(old["cells"][index]["source"], indent=1, ensure_ascii=False).replace("\n", "\n   ")
    new_text = json.dumps(source, indent=1, ensure_ascii=False).replace("\n", "\n   ")
    assert before.decode().count(old_text) == 1
    assert before.decode().replace(old_text, new_text) == after.decode()


FORMS = {
    "shell": ["!pip install peft"],
    "shell continued over indented lines (peft's token classification notebook, cell 14)": [
        "! python preprocess.py --data_dir data \\\n", "    --output_dir out \\\n", "    --max_seq_length 128"],
    "captured shell": ["!!ls -l"],
    "line magics": ["%pip install -q peft\n", "%env TOKENIZERS_PARALLELISM=false  # quiet"],
    "a line magic running a statement": ["%time trainer.evaluate()"],
    "assignments from shell and magic": ["files = !ls out\n", "home = %env HOME\n", "print(files, home)"],
    "help": ["Trainer?\n", "??get_peft_model\n", "trainer.train?"],
    "autocall": ["/print 1 2"],
    "a cell magic that is not Python": ["%%bash\n", "ls out\n", "echo 'unbalanced\n"],
    "%%writefile: another file's code": ["%%writefile train.py\n", "model.save_pretrained('x')\n"],
    "a pasted session": [">>> import os\n", ">>> model.save_pretrained('x')"],
    "get_ipython() spellings": ["get_ipython().system(\"nvidia-smi\")\n",
                                "get_ipython().run_line_magic(\"pip\", \"install peft\")"],
    "an empty cell": [],
    "only comments": ["# nothing to run\n", "# here either"],
    "an indented cell": ["  import os\n", "  out_dir = os.path.join(\"out\", \"lora\")"],
}


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_each_form_is_kept_and_the_stale_save_after_it_is_fixed(tmp_path, monkeypatch, form):
    before, after, result = fix(tmp_path, monkeypatch, [code(form), SETUP, SAVE])
    assert result.exit_code == 0, result.output
    assert "LC001" in result.output and "cell 4:2:5" in result.output, result.output
    assert_only_cell_changed(before, after, 3, FIXED)  # the form's cell: byte-for-byte
    assert invoke("fix", "--check", "nb.ipynb").exit_code == 0


def test_a_stale_save_inside_a_time_cell_is_fixed(tmp_path, monkeypatch):
    cell = ["%%time\n", *SETUP["source"][:-1], "trainer.train()\n", "!ls out\n", *SAVE["source"]]
    before, after, result = fix(tmp_path, monkeypatch, [code(["!pip install -q peft"]), code(cell)])
    assert result.exit_code == 0, result.output
    assert "nb.ipynb:cell 3:7:5: LC001" in result.output
    assert_only_cell_changed(before, after, 2, [*cell[:-1], f"    {UNWRAP}\n", "    model_to_save.save_pretrained(\"out\")"])


def test_a_capture_cell_body_is_analysed_with_its_ipython_lines(tmp_path, monkeypatch):
    cell = ["%%capture log\n", "!pip install peft\n", *SAVE["source"]]
    before, after, result = fix(tmp_path, monkeypatch, [SETUP, code(cell)])
    assert result.exit_code == 0, result.output
    assert_only_cell_changed(before, after, 2, [*cell[:2], *FIXED])


def test_the_body_of_another_cell_magic_is_not_analysed(tmp_path, monkeypatch):
    cell = ["%%writefile save.py\n", *SAVE["source"]]
    before, after, result = fix(tmp_path, monkeypatch, [SETUP, code(cell)])
    assert result.exit_code == 0 and after == before
    assert "LC001" not in result.output and "0 fixed" in result.output


def test_ipython_lines_inside_the_lora_block(tmp_path, monkeypatch):
    cell = ["if args.use_lora:\n", "    files = !ls -l \\\n", "        out\n", "    Trainer?\n",
            "    model.save_pretrained(\"out\")"]
    before, after, result = fix(tmp_path, monkeypatch, [SETUP, code(cell)])
    assert result.exit_code == 0, result.output
    assert_only_cell_changed(before, after, 2, [cell[0], f"    {UNWRAP}\n", *cell[1:4],
                                                "    model_to_save.save_pretrained(\"out\")"])


def test_a_guard_reindents_a_continued_shell_command_with_its_block(tmp_path, monkeypatch):
    ddp = code(["import os\n", "local_rank = int(os.environ.get(\"LOCAL_RANK\", -1))"])
    cell = ["if args.use_lora:\n", "    !cp -r out \\\n", "        backup/\n", "    model.save_pretrained(\"out\")"]
    before, after, result = fix(tmp_path, monkeypatch, [ddp, SETUP, code(cell)])
    assert result.exit_code == 0, result.output
    assert "cell 4:1:1: LC002" in result.output
    assert_only_cell_changed(before, after, 3, [
        "if trainer.is_world_process_zero():\n", "    if args.use_lora:\n", f"        {UNWRAP}\n",
        "        !cp -r out \\\n", "            backup/\n", "        model_to_save.save_pretrained(\"out\")"])
    assert invoke("fix", "--check", "nb.ipynb").exit_code == 0


def test_an_indented_cell_is_fixed_at_its_own_indentation(tmp_path, monkeypatch):
    cell = ["  if args.use_lora:\n", "      model.save_pretrained(\"out\")"]
    before, after, result = fix(tmp_path, monkeypatch, [SETUP, code(cell)])
    assert result.exit_code == 0, result.output
    assert "cell 3:2:7: LC001" in result.output
    assert_only_cell_changed(before, after, 2, [cell[0], f"      {UNWRAP}\n", "      model_to_save.save_pretrained(\"out\")"])


@pytest.mark.parametrize("cell, where", [
    (["x = (1,\n", "  2 3)"], "cell 3:2:3: cannot parse: invalid syntax. Perhaps you forgot a comma?"),
    # A broken body fails when the magic runs it. The cell is incomplete: the error is its own
    # (not the next cell's first line), and the line Python names is the cell's.
    (["%%time\n", "if a:\n"], "cell 3:2:6: cannot parse: expected an indented block after 'if' statement on line 2"),
    (["!ls\n", "print('a')?"], "cell 3:2:"),
    (["  if a:\n", "  x = (1,\n", "    2 3)"], "cell 3:2:3: cannot parse: expected an indented block after 'if' "
                                              "statement on line 1"),  # an indented cell: its own lines still
])
def test_a_cell_that_is_not_python_is_an_error_naming_it(tmp_path, monkeypatch, cell, where):
    before, after, result = fix(tmp_path, monkeypatch, [SETUP, code(cell), SAVE])
    assert result.exit_code == 2 and after == before
    assert f"nb.ipynb: error: {where}" in result.stderr, result.stderr


def test_a_rewrite_that_moves_an_ipython_line_out_of_place_is_refused():
    cells = code_cells(notebook([code(["%%time\n", "x = 1"]), code(["!a \\\n", "  b\n", "y = 2"]),
                                 code(["  z = 1"])]).decode())
    module, layouts = _module(cells)
    assert _split(module, cells, layouts) == [c.text for c in cells]
    # The %%time line must stay first in its cell, at column 0.
    assert _split(module.replace("pass  # lora-codemod: magic 0\nx = 1", "if c:\n    pass  # lora-codemod: magic 0\nx = 1"),
                  cells, layouts) is None
    # The lines of one shell command stay together.
    assert _split(module.replace("magic 0\npass  # lora-codemod: magic 0+", "magic 0\nq = 1\npass  # lora-codemod: magic 0+"),
                  cells, layouts) is None
    # The opener of an indented cell stays where it was.
    assert _split(module.replace("if True:  # lora-codemod: indented cell\n", "w = 0\nif True:  # lora-codemod: indented cell\n"),
                  cells, layouts) is None


def test_special_is_a_span_of_physical_lines():
    assert Special(0, 2, "shell") == cell_syntax(["!a \\", "  b \\", "  c"]).specials[0]


def test_a_future_import_in_a_later_cell(tmp_path, monkeypatch):
    """IPython compiles each cell alone: `from __future__` may open any cell; in the one
    module the analysis reads it would not compile, so it is kept out like an IPython line."""
    future = code(["from __future__ import annotations  # PEP 563\n", "import os"])
    before, after, result = fix(tmp_path, monkeypatch, [SETUP, future, SAVE])
    assert result.exit_code == 0, result.output
    assert_only_cell_changed(before, after, 3, FIXED)


def test_an_error_position_is_read_from_the_cell_not_from_the_notebook_file(tmp_path):
    """Python rereads an error's line from a file of the given name when there is one, and
    recounts the column on it: the notebook's JSON is not the cell."""
    from lora_codemod.notebook import _cell_error

    path = tmp_path / "nb.ipynb"
    path.write_text("é" * 40 + "\n" + "é" * 40 + "\n", encoding="utf-8")
    _, layouts = _module([_Cell(0, 0, 0, "x = 1"), _Cell(2, 0, 0, "y = [1,\n     2 3]")])
    error = _cell_error(str(path), layouts)
    assert error.message == "cell 3:2:6: cannot parse: invalid syntax. Perhaps you forgot a comma?"
