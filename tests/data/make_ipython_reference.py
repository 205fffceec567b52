"""Write tests/data/ipython_reference.json: what IPython itself does with a set of cells.

For each cell: the physical lines IPython's `TransformerManager` changes (0-based), notes on
the cleanup it applied, and whether the transformed cell compiles. tests/test_notebook_ipython.py
holds lora_codemod/ipython.py to these answers, so the tool needs no IPython to follow it.

Regenerate with a Python that has IPython (not a dependency of this project):

    python -m venv /tmp/ipy && /tmp/ipy/bin/pip install ipython
    /tmp/ipy/bin/python tests/data/make_ipython_reference.py > tests/data/ipython_reference.json

The cells: hand-written ones (each IPython form, and the Python around them), then seeded random
mixes of Python, IPython and broken lines at random indentations.
"""

from __future__ import annotations

import difflib
import json
import random
import re
import sys

import IPython
from IPython.core.inputtransformer2 import (
    TransformerManager,
    classic_prompt,
    ipython_prompt,
    leading_empty_lines,
    leading_indent,
)

# The execution magics (IPython's ExecutionMagics) run their body as IPython code.
PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug"}

HAND_WRITTEN = [
    "! python preprocess.py --data_dir ./data \\\n    --output_dir out \\\n    --max_len 128\nprint(1)",
    "!!ls -l", "!ls\n!!pwd\nx = 1", "if True:\n    !ls\n    x = 1",
    "if True:\n    !ls -a \\\n      -l\n    x = 1\nelse:\n    %env A=1",
    "%pip install -q peft", "%env CUDA_VISIBLE_DEVICES=0  # force GPU 0", "%time train(model)",
    "%%time\nx = 1\ny = 2", "%%timeit -n 3 setup()\nsum(range(10))", "%%capture out\n!pip install peft\nimport peft",
    "%%prun -s cumulative\nrun()", "%%debug\nf()", "%%bash\nls\necho 'x", "%%writefile train.py\nimport os\nm.save()",
    "%%html\n<b>hi</b>", "%%python3\nprint(1)", "%%script bash\nls", "%%capture\n%%time\nx = 1", "%%time?",
    "\n\n%%bash\nls", "obj?", "obj??", "?obj", "??obj", "np.mean?", "%timeit?", "x = 1  # what?", "s = 'what?'",
    "print('a')?", "foo(bar?", "a if b else c?", "*int*?", "x.y.z??", "dict(a=1)?", "files = !ls",
    "files = !ls -l \\\n   -a", "x = %env HOME", "x = % env", "x == !y", "x += !ls", "d[k] = !ls", "a, b = !echo 1 2",
    "(a,\n b) = !ls", "f(x=!ls)", "x = y = !ls", "x: list = !ls", "x = !ls # comment", "lambda x=!ls: x",
    "x = \\\n!ls", "q = '''\n!not a command\n%not\nwho?\n'''\nprint(q)", "x = (1,\n!ls)", "x = 1 \\\n  + 2\n!ls",
    "/print 1 2", ",print a b", ";print a b", "get_ipython().system('ls')\nget_ipython().run_line_magic('pip', 'x')",
    "", "\n\n", "# only\n# comments", "  x = 1\n  y = 2", "  x = 1\ny = 2", "  x = 1\n    y = 2", "   \nx = 1",
    "  \n  x = 1", "\n  x = 1", "  # comment\n  x = 1", "  # comment\n    x = 1", "  !ls\n  x = 1", ">>> x = 1\n>>> y = 2",
    "x = 1\n... y", "In [1]: x = 1", "x = 1\n   ...: y = 2", "  %%time\n  x = 1", "%%time\n  x = 1\n  y = 2",
    "def f():\n    x = !ls\n    return x", "for f in files:\n    !echo {f}\n", "x = f'{a!r}'\n!ls",
    "x = 'abc \\\ndef'\n!ls", "x = 1 # comment with !ls\n!ls", "if a:\n    pass\n  !ls", "%%time\n", "!", "%", "?",
    "x = 1; !ls", "class A:\n    def f(self):\n        !ls\n        files = !ls\n        self.x = %env A",
    "a = 1\nb = a?", "%matplotlib inline\nimport matplotlib", "%load_ext autoreload\n%autoreload 2",
    "!pip install -q \"peft>=0.7\" 'trl'\n!nvidia-smi", "x = r'\\'\n!ls", "s = \"it's\"\n!ls", "print(\"?\")",
    "%%time\n%pip install peft\nimport peft", 's = """\n>>> x\n"""', '"""\n>>> x\n"""', "x = (1,\n  2 3)",
]

FRAGMENTS = [
    "x = 1", "if a:", "y = 2", "s = 'a?'", 's = """', "multi ? !x %y", '"""', "foo(", "bar)", "# c ?", "x = (1,", "2)",
    "d = {'a': 1}", "print(x)", "def f():", "return 1", "z = a == b", "w = x if y else z", "x = y \\", "+ 1", "!ls",
    "!!ls", "%pip install x", "files = !ls", "x = %env", "obj?", "??obj", "%%time", "%%bash", "!cmd \\", "--flag",
    "x.y?", ">>> q", "In [1]: x", "else:", "for i in r:", "pass", "x = '!ls'", "t = f'{a!r}'", "x += 1",
    "a, b = !echo", "x: int = %time", "%%capture", "/f a", ";f a", ",f a", "?", "   ", "", "r = x[1:2]",
    "lambda q=1: q", "k = 'abc \\", "def'", "m = '''x", "y'''", "v = x != y", "q = x <= y", "u = f(a=!ls)", "...",
    "... x", "get_ipython().system('ls')", "    !python a.py \\", "      --x 1 \\", "      --y", "if b:  # c",
    "    files = !ls \\", "%%timeit -n1", "x = \\", "(a,", "b) = !ls", "foo(bar?", "%env A=1  # c",
    "%%writefile f.py", "try:", "except E:", "with x as y:", "class C:", "    def m(self):", "        !ls", "while x:",
]


def random_cells(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    cells = []
    for _ in range(count):
        lines = [rng.choice(["", "", "", "  ", "    ", "\t"]) + rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 6))]
        cells.append("\n".join(lines) + rng.choice(["", "\n"]))
    return cells


MANAGER = TransformerManager()


def changed(text: str, offset: int = 0) -> tuple[set[int], list[str]]:
    lines = text.splitlines(keepends=True)
    if not lines:
        return set(), []
    if not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    kept = leading_empty_lines(lines)
    offset += len(lines) - len(kept)
    lines = kept
    cleaned = leading_indent(lines)
    if classic_prompt(cleaned) != cleaned or ipython_prompt(cleaned) != cleaned:
        return set(range(offset, offset + len(lines))), ["prompts"]
    notes = ["indented"] if cleaned != lines else []
    if cleaned[0].startswith("%%") and not re.match(r"%%\w+\?", cleaned[0]):
        if cleaned[0][2:].rstrip().partition(" ")[0] in PYTHON_CELL_MAGICS:
            inner, more = changed("".join(lines[1:]), offset + 1)
            return {offset} | inner, notes + ["python cell magic"] + more
        return set(range(offset, offset + len(lines))), notes + ["cell magic"]
    out = MANAGER.do_token_transforms(list(cleaned))
    lines_changed: set[int] = set()
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(a=cleaned, b=out, autojunk=False).get_opcodes():
        if tag != "equal":
            lines_changed |= set(range(offset + i1, offset + i2))
    return lines_changed, notes


def compiles(text: str) -> bool:
    lines = text.splitlines(keepends=True)
    cleaned = leading_indent(leading_empty_lines(lines)) if lines else lines
    if cleaned and cleaned[0].startswith("%%") and cleaned[0][2:].rstrip().partition(" ")[0] in PYTHON_CELL_MAGICS:
        # The magic compiles its body when it runs: that is where a broken body fails.
        return compiles("".join(lines[len(lines) - len(cleaned) + 1:]))
    try:
        compile(MANAGER.transform_cell(text), "<cell>", "exec")
    except Exception:  # SyntaxError, and IndentationError from IPython's own tokenising
        return False
    return True


def verdict(cell: str) -> dict:
    try:
        lines, notes = changed(cell)
    except Exception as exc:  # IPython cannot transform it: not valid input
        return {"cell": cell, "lines": None, "notes": [type(exc).__name__], "compiles": False}
    return {"cell": cell, "lines": sorted(lines), "notes": notes, "compiles": compiles(cell)}


def main() -> None:
    cells = HAND_WRITTEN + random_cells(1500, seed=16)
    entries = ",\n".join(json.dumps(verdict(c), ensure_ascii=True) for c in cells)  # one cell a line
    sys.stdout.write(f'{{"ipython": {json.dumps(IPython.__version__)}, "cells": [\n{entries}\n]}}\n')


if __name__ == "__main__":
    main()
