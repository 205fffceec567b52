"""Jupyter notebooks (.ipynb): the code cells analysed as one module, the rewrite put back.

- The code cells, in order, make one module (a trainer built in cell 3 and saved from in cell 7
  is seen); each starts with a marker comment so that the rewritten module can be cut back into
  the cells it came from.
- What IPython would not run as Python (lora_codemod/ipython.py: `!nvidia-smi` and its
  backslash-continued lines, `%pip ...`, `x = !ls`, `obj?`, a `%%bash` cell, a `%%time` line)
  becomes as many `pass` lines at the indentation of its first line, for the analysis, and is
  put back as it was (re-indented with its block); a `%%time`/`%%capture` body is analysed.
- A cell whose lines share an indentation (IPython removes it) is analysed after an
  `if True:` line of the analysis's own, so no column moves; the line is dropped again.
- Only the `source` values of changed cells are rewritten in the file's text, in the layout
  they had (a list of lines, its indentation, the file's ASCII escaping): every other byte of
  the notebook (outputs, metadata, indentation) is kept.
- A rewrite that would move a statement across cells (a guard around statements of two cells)
  is not applied: the notebook is reported as an error, left unchanged.
- Findings name the cell (1-based, counting every cell): `train.ipynb:cell 7:3:9`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

from lora_codemod.findings import SourceError, SourceResult
from lora_codemod.ipython import Special, cell_syntax

MARKER = "# lora-codemod: notebook cell "


@dataclass
class _Cell:
    index: int  # in the notebook (0-based)
    start: int  # character span of its `source` value in the file's text
    end: int
    text: str  # the source, joined


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


_DECODER = json.JSONDecoder()


def _value_end(text: str, i: int) -> int:
    return _DECODER.raw_decode(text, i)[1]


def _object_members(text: str, i: int):
    """(key, value start, value end) of the object at text[i] == '{'."""
    assert text[i] == "{"
    i = _skip_ws(text, i + 1)
    if text[i] == "}":
        return
    while True:
        key, i = json.decoder.scanstring(text, i + 1)
        i = _skip_ws(text, i)
        assert text[i] == ":"
        start = _skip_ws(text, i + 1)
        end = _value_end(text, start)
        yield key, start, end
        i = _skip_ws(text, end)
        if text[i] == "}":
            return
        assert text[i] == ","
        i = _skip_ws(text, i + 1)


def _array_items(text: str, i: int):
    assert text[i] == "["
    i = _skip_ws(text, i + 1)
    if text[i] == "]":
        return
    while True:
        end = _value_end(text, i)
        yield i, end
        i = _skip_ws(text, end)
        if text[i] == "]":
            return
        assert text[i] == ","
        i = _skip_ws(text, i + 1)


def code_cells(text: str) -> list[_Cell]:
    """The code cells of a notebook's text, with the span of each `source` value."""
    cells = []
    top = _skip_ws(text, 0)
    for key, start, _ in _object_members(text, top):
        if key != "cells":
            continue
        for index, (cell_start, _) in enumerate(_array_items(text, start)):
            members = {k: (s, e) for k, s, e in _object_members(text, cell_start)}
            if "source" not in members or "cell_type" not in members:
                continue
            s, e = members["cell_type"]
            if json.loads(text[s:e]) != "code":
                continue
            s, e = members["source"]
            value = json.loads(text[s:e])
            cells.append(_Cell(index, s, e, "".join(value) if isinstance(value, list) else value))
    return cells


_PLACEHOLDER = "pass  # lora-codemod: magic "
_HEAD = re.compile(r"^([ \t]*)" + re.escape(_PLACEHOLDER) + r"(\d+)$")
_MORE = re.compile(r"^([ \t]*)" + re.escape(_PLACEHOLDER) + r"(\d+)\+$")
# IPython removes the leading indentation of a cell whose first line is indented: a block
# opener before it makes Python read the cell the same way, without moving a column.
_OPENER = "if True:  # lora-codemod: indented cell"


@dataclass
class _Layout:
    """How one code cell sits in the module: its lines there, each one's line in the cell."""

    index: int  # the cell's index in the notebook
    first: int  # the module line of the cell's first line (after its marker)
    where: list[int | None]  # per module line: its 0-based line in the cell (None: an opener)
    specials: list[Special]  # IPython lines, replaced by placeholders of as many lines
    lines: list[str]  # the cell's physical lines
    head: int  # module lines at the top that must come back unchanged (cell magic, opener)
    text: str  # the cell's part of the module, after its marker


def _module(cells: list[_Cell]) -> tuple[str, list[_Layout]]:
    """The module text (each cell after a marker line, IPython lines as `pass` placeholders of
    as many lines, at their first line's indentation), and each cell's layout."""
    parts, layouts = [], []
    line = 1
    for cell in cells:
        lines = cell.text.splitlines()
        syntax = cell_syntax(lines)
        _future_imports(lines, syntax)
        code = list(lines)
        for n, special in enumerate(syntax.specials):
            top = special.kind in ("cell magic", "prompts")  # the cell's own level: column 0
            indent = "" if top else re.match(r"[ \t]*", lines[special.first]).group(0)
            code[special.first] = f"{indent}{_PLACEHOLDER}{n}"
            for k in range(special.first + 1, special.last + 1):
                code[k] = f"{indent}{_PLACEHOLDER}{n}+"
        out: list[str] = []
        where: list[int | None] = []
        for k, text in enumerate(code):
            if k in syntax.indented:
                out.append(_OPENER)
                where.append(None)
            out.append(text)
            where.append(k)
        head = 0
        cell_magics = {s.first for s in syntax.specials if s.kind == "cell magic"}
        while head < len(out) and (where[head] is None or where[head] in cell_magics):
            head += 1
        body = "".join(t + "\n" for t in out)
        parts.append(f"{MARKER}{cell.index + 1}\n" + body)
        layouts.append(_Layout(cell.index, line + 1, where, syntax.specials, lines, head, body))
        line += 1 + len(out)
    return "".join(parts), layouts


_FUTURE = re.compile(r"from[ \t]+__future__[ \t]+import[ \t]+[\w, \t]+(#.*)?$")


def _future_imports(lines: list[str], syntax) -> None:
    """`from __future__ import ...` lines, kept out of the module like IPython lines: IPython
    compiles each cell alone, so a later cell may start with one, and in the one module it
    would not compile."""
    taken = {k for s in syntax.specials for k in range(s.first, s.last + 1)}
    found = [Special(k, k, "future") for k, text in enumerate(lines) if k not in taken and _FUTURE.match(text)]
    if found:
        syntax.specials = sorted(syntax.specials + found, key=lambda s: s.first)


def _locate(layouts: list[_Layout], line: int) -> tuple[int, int]:
    """Module line -> (1-based cell number, 1-based line in the cell)."""
    for layout in reversed(layouts):
        if line >= layout.first:
            offset = line - layout.first
            if offset >= len(layout.where):  # past the cell's last line (an error at the end)
                return layout.index + 1, offset - layout.where.count(None) + 1
            following = [w for w in layout.where[offset:] if w is not None]  # an opener: the next line
            return layout.index + 1, (following[0] if following else len(layout.lines) - 1) + 1
    return layouts[0].index + 1, 1


def _cell_error(path: str, layouts: list[_Layout]) -> SourceError | None:
    """The first cell that does not parse on its own, with the position in it. IPython compiles
    each cell alone, so the error is always some cell's; in the one module, an incomplete cell
    would be reported at the next cell's first line, and Python's message would count the
    module's lines ("expected an indented block after 'if' statement on line 7")."""
    import ast

    import libcst as cst

    for layout in layouts:
        try:
            # Not the notebook's path: Python would read the error's line from that file.
            compile(layout.text, "<cell>", "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
            message, line, col = None, 0, 0
        except SyntaxError as exc:
            message, line, col = exc.msg, exc.lineno or 1, exc.offset or 1
        except ValueError:
            message, line, col = None, 0, 0
        if message is None:
            try:
                cst.parse_module(layout.text)
                continue
            except cst.ParserSyntaxError as exc:  # syntax newer than libcst knows
                message, line, col = exc.message, exc.raw_line, exc.raw_column + 1
        first = replace(layout, first=1)
        message = re.sub(r"\bline (\d+)\b", lambda m: f"line {_locate([first], int(m.group(1)))[1]}", message)
        return SourceError(path, f"cell {layout.index + 1}:{_locate([first], line)[1]}:{col}: cannot parse: {message}")
    return None


def _put_back(body: str, layout: _Layout) -> str | None:
    """The cell's lines with each placeholder replaced by its IPython lines, re-indented as the
    placeholder was; None when a placeholder is missing, repeated or split."""
    lines = body.split("\n")
    out: list[str] = []
    seen: set[int] = set()
    k = 0
    while k < len(lines):
        head = _HEAD.match(lines[k])
        if head is None:
            if _MORE.match(lines[k]):
                return None  # a continuation away from its first line
            out.append(lines[k])
            k += 1
            continue
        n = int(head.group(2))
        if n >= len(layout.specials) or n in seen:
            return None
        seen.add(n)
        special = layout.specials[n]
        count = special.last - special.first
        indent = head.group(1)
        for extra in range(1, count + 1):
            more = _MORE.match(lines[k + extra]) if k + extra < len(lines) else None
            if more is None or more.group(1) != indent or int(more.group(2)) != n:
                return None
        original = layout.lines[special.first:special.last + 1]
        old = re.match(r"[ \t]*", original[0]).group(0)
        if special.kind in ("cell magic", "prompts"):
            if indent:
                return None  # the cell's own level moved into a block
            out += original
        else:
            out.append(indent + original[0][len(old):])
            out += [indent + t[len(old):] if old != indent and t.startswith(old) else t for t in original[1:]]
        k += count + 1
    if len(seen) != len(layout.specials):
        return None
    return "\n".join(out)


def _split(output: str, cells: list[_Cell], layouts: list[_Layout]) -> list[str] | None:
    """The new source of each code cell, or None when the markers did not survive in order at
    column 0 (a rewrite across cells), a cell magic or opener line moved, or an IPython line was
    lost."""
    chunks = re.split(r"(?m)^" + re.escape(MARKER) + r"(\d+)\n", output)
    if chunks[0].strip() or len(chunks) != 2 * len(cells) + 1:
        return None
    out = []
    for k, (cell, layout) in enumerate(zip(cells, layouts)):
        if int(chunks[1 + 2 * k]) != cell.index + 1:
            return None
        body = chunks[2 + 2 * k]
        if body == layout.text:
            out.append(cell.text)  # unchanged: every byte of it, line ends included
            continue
        old_head = layout.text.split("\n")[:layout.head]
        lines = body.split("\n")
        if lines[:layout.head] != old_head:
            return None
        # Opener lines are the analysis's only: drop them (they are all in the head).
        kept = [t for t, w in zip(old_head, layout.where) if w is not None]
        restored = _put_back("\n".join(kept + lines[layout.head:]), layout)
        if restored is None:
            return None
        if not cell.text.endswith("\n") and restored.endswith("\n"):
            restored = restored[:-1]
        out.append(restored)
    return out


def _source_value(raw: str, new_text: str, ensure_ascii: bool, indent_unit: str) -> str:
    """`new_text` as a `source` value laid out as `raw` (the old value) was."""
    value = json.loads(raw)
    if isinstance(value, str):
        return json.dumps(new_text, ensure_ascii=ensure_ascii)
    lines = new_text.splitlines(keepends=True)
    items = list(_array_items(raw, 0))
    if len(items) >= 2:
        sep = raw[items[0][1]:items[1][0]]
        head, tail = raw[:items[0][0]], raw[items[-1][1]:]
    else:
        # One line or none: indent one unit deeper than the line that holds `"source": [`.
        base = re.match(r"[ \t]*", raw.split("\n")[-1]).group(0) if "\n" in raw else ""
        base = base or indent_unit * 3
        inner = base + indent_unit if "\n" in raw else indent_unit * 4
        head, sep, tail = "[\n" + inner, ",\n" + inner, "\n" + inner[:-len(indent_unit)] + "]"
        if items:
            head, tail = raw[:items[0][0]], raw[items[-1][1]:]
    if not lines:
        return "[]"
    return head + sep.join(json.dumps(line, ensure_ascii=ensure_ascii) for line in lines) + tail


@dataclass
class Notebook:
    """A notebook's code cells as one module, and the way back (the engine's adapter: nothing
    here runs the rules)."""

    path: str
    source: bytes
    text: str
    cells: list[_Cell]
    layouts: list[_Layout]
    module: bytes  # the code cells, in order, as one Python module

    def back(self, result: SourceResult) -> SourceResult:
        """The module's result as the notebook's: findings in their cells, the rewrite put back
        into each cell in the source's own layout, a rewrite across cells refused."""
        path, source, text, cells, layouts = self.path, self.source, self.text, self.cells, self.layouts
        findings = []
        for finding in result.findings:
            if finding.path != path:
                findings.append(finding)
                continue
            cell, line = _locate(layouts, finding.line)
            end_line = _locate(layouts, finding.end_line)[1] if finding.end_line else 0
            findings.append(replace(finding, line=line, end_line=end_line, cell=cell))
        if result.error is not None:
            error = result.error
            if error.line:
                error = _cell_error(path, layouts) or SourceError(
                    path, "cell {}:{}:{}: {}".format(*_locate(layouts, error.line), error.col, error.message))
            return SourceResult(path, source, source, findings, error, result.skipped)
        if result.output == result.source:
            return SourceResult(path, source, source, findings, skipped=result.skipped)
        new_sources = _split(result.output.decode("utf-8"), cells, layouts)
        if new_sources is None:
            error = SourceError(path, "the rewrite would move statements across cells; notebook left unchanged "
                                "(fix it by hand, or move the code into one cell)")
            return SourceResult(path, source, source, findings, error)
        ensure_ascii = all(ord(c) < 128 for c in text)
        indent = re.search(r"\n([ \t]+)\"", text)
        unit = indent.group(1) if indent else " "
        out, last = [], 0
        for cell, new in zip(cells, new_sources):
            if new == cell.text:
                continue
            out += [text[last:cell.start], _source_value(text[cell.start:cell.end], new, ensure_ascii, unit)]
            last = cell.end
        out.append(text[last:])
        return SourceResult(path, source, "".join(out).encode("utf-8"), findings)


def open_notebook(source: bytes, path: str) -> Notebook | SourceResult:
    """The notebook's code cells as one module; or, when there is nothing to analyse (no code
    cell) or it cannot be read, its final result."""
    try:
        text = source.decode("utf-8")
        cells = code_cells(text)
    except (UnicodeDecodeError, ValueError, AssertionError, IndexError, KeyError) as exc:
        return SourceResult(path, source, source, error=SourceError(path, f"cannot read the notebook: {exc}"))
    if not cells:
        return SourceResult(path, source, source)
    module, layouts = _module(cells)
    return Notebook(path, source, text, cells, layouts, module.encode("utf-8"))


def cell_diff(result: SourceResult) -> bytes:
    """Unified diffs of the changed cells' sources, headed `a/<path>:cell N`."""
    import difflib

    from lora_codemod.report.diff import display_path

    old = {c.index: c.text for c in code_cells(result.source.decode("utf-8"))}
    new = {c.index: c.text for c in code_cells(result.output.decode("utf-8"))}
    rel = display_path(result.path)
    out = []
    for index in sorted(old):
        if new.get(index, old[index]) == old[index]:
            continue
        a = old[index].splitlines(keepends=True)
        b = new[index].splitlines(keepends=True)
        for line in difflib.unified_diff(a, b, f"a/{rel}:cell {index + 1}", f"b/{rel}:cell {index + 1}", lineterm="\n"):
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of cell\n")
    return "".join(out).encode("utf-8")
