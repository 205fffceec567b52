"""Which lines of a notebook cell are IPython syntax rather than Python, by IPython's own rules.

IPython (`IPython.core.inputtransformer2.TransformerManager`, IPython >= 7) turns a cell into
Python in this order, and this module finds the same lines, without importing IPython:

1. cleanup: when the cell's first line is indented, that indentation is removed from every
   line that starts with it (`leading_indent`); a cell pasted with `>>> `/`... ` or
   `In [1]: `/`...: ` prompts (on its first or second line) has them stripped;
2. a cell whose first line starts with `%%` is a cell magic: the whole cell is handed to the
   magic. Only the execution magics run their body as IPython code in the kernel's own
   namespace (`%%time`, `%%timeit`, `%%capture`, `%%prun`, `%%debug`); the others (`%%bash`,
   `%%writefile`, `%%html`, `%%python` in a subprocess, ...) are not this notebook's Python;
3. then, per logical line (physical lines joined by brackets, strings and backslashes), outside
   strings and comments:
   - an escaped command, its first character (after the indentation) one of `! % ? , ; /`:
     `!cmd` and `!!cmd` (shell), `%magic` (a line magic), `?obj`/`??obj` (help), `,f a b`,
     `;f a b`, `/f a b` (autocall). The command takes in the next physical lines while a line
     ends with a backslash (`find_end_of_continued_line`), and is not tokenised as Python;
   - an assignment from one, `x = !cmd` or `x = %magic` (the first `=` outside brackets);
   - help at the end, `obj?`, `obj.attr??`, `%magic?` (the logical line's last token is `?`
     and it ends with a dotted name: IPython's `_help_end_re`).
   Everything else is Python, `get_ipython().system(...)` spellings included.

Each special is reported as its span of physical lines, so the caller can put it back
byte-for-byte. Prompt-pasted cells are reported whole (they are not analysed).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

# ExecutionMagics, the built-in cell magics that run their body as IPython code in the user's
# namespace (IPython's `%lsmagic`: time, timeit, capture, prun, debug). Every other built-in cell
# magic hands the body to something else (a shell, a file, a browser, another interpreter).
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})

ESCAPES = frozenset("!%?,;/")  # IPython's ESCAPE_SINGLES; `!!` and `??` start with them
_HELP_END = re.compile(r"(%{0,2}[a-zA-Z_*][\w*]*(?:\.[a-zA-Z_*][\w*]*)*)(\?\??)$")
_DOCTEST_PROMPT = re.compile(r"^\s*>>>")
_DOCTEST_PS1 = re.compile(r"^\s*>>>[ \t]?")
_DOCTEST_PS2 = re.compile(r"^\s*\.\.\.[ \t]?")
_TRIPLE = re.compile(r"(?<!\\)(\"\"\"|\'\'\')")
_STRING_PREFIX = re.compile(r"(?i)^[rubf]*$")
_IPYTHON_PROMPT = re.compile(r"^(((\[nav\]|\[ins\])? )?In \[\d+\]: |\s*\.{3,}: ?)")
_LEADING = re.compile(r"^[ \t]*")
_OPERATOR_BEFORE_EQ = frozenset("=!<>+-*/%&|^@:")


@dataclass(frozen=True)
class Special:
    """Physical lines `first`..`last` (0-based, inclusive) of a cell that are not Python."""

    first: int
    last: int
    kind: str  # "shell", "magic", "help", "autocall", "assignment", "cell magic", "prompts"


@dataclass
class CellSyntax:
    specials: list[Special] = field(default_factory=list)  # sorted, disjoint
    # Cell lines before which the analysis needs a block opener: IPython removes the leading
    # indentation of the cell (or of a `%%time` body) whose first line is indented.
    indented: list[int] = field(default_factory=list)


def cell_syntax(lines: list[str]) -> CellSyntax:
    """The IPython specials of a cell given as its physical lines (no line ends)."""
    syntax = CellSyntax()
    _unit(lines, 0, syntax)
    return syntax


def magic_name(line: str) -> str:
    """`%%time -n 3` -> `time`."""
    rest = line.lstrip(" \t")[2:]
    return rest.split(None, 1)[0] if rest.strip() else ""


def _margin(lines: list[str], start: int) -> str:
    """The indentation `textwrap.dedent` removes from lines[start:] (blank lines ignored)."""
    margin: str | None = None
    for text in lines[start:]:
        if not text.strip(" \t"):
            continue
        indent = _LEADING.match(text).group(0)
        if margin is None or indent.startswith(margin):
            margin = indent if margin is None else margin
        elif margin.startswith(indent):
            margin = indent
        else:
            k = 0
            while k < min(len(margin), len(indent)) and margin[k] == indent[k]:
                k += 1
            margin = margin[:k]
    return margin or ""


def _in_triple_string(lines: list[str]) -> list[bool]:
    """IPython's doctest prompt stripper's mask: the lines it takes to be inside a triple-quoted
    string that a prompt cannot start (a docstring: nothing but a string prefix before it)."""
    mask: list[bool] = []
    inside: str | None = None
    preserve = False
    seen_prompt = False
    for text in lines:
        mask.append(inside is not None and preserve)
        for match in _TRIPLE.finditer(text):
            quote = match.group(1)
            if inside is None:
                inside = quote
                before = text[:match.start()]
                stripped = _DOCTEST_PS2.sub("", _DOCTEST_PS1.sub("", before, count=1), count=1)
                prompted = stripped != before and seen_prompt
                preserve = bool(not prompted and _STRING_PREFIX.match(stripped.strip()))
                mask[-1] = preserve
            elif inside == quote:
                inside, preserve = None, False
        seen_prompt = seen_prompt or bool(_DOCTEST_PROMPT.match(text))
    return mask


def _has_prompts(lines: list[str], start: int, margin: str) -> bool:
    """IPython's prompt strippers: a `>>>` line anywhere outside docstrings (doctest style), or
    an `In [1]: `/`...: ` prompt on the first or second line."""
    body = lines[start:]
    if any(not inside and _DOCTEST_PROMPT.match(text) for text, inside in zip(body, _in_triple_string(body))):
        return True
    first = body[0][len(margin):]
    second = body[1][len(margin):] if len(body) > 1 else None
    return bool(_IPYTHON_PROMPT.match(first) or (second is not None and _IPYTHON_PROMPT.match(second)))


def _unit(lines: list[str], start: int, syntax: CellSyntax) -> None:
    """A cell, or the body of a Python cell magic, from line `start`, cleaned up as IPython does
    (leading blank lines dropped, the common indentation removed, prompts stripped), then its
    cell magic, then its lines."""
    while start < len(lines) and not lines[start].strip(" \t"):
        start += 1
    if start >= len(lines):
        return
    margin = _margin(lines, start)
    if _has_prompts(lines, start, margin):
        syntax.specials.append(Special(start, len(lines) - 1, "prompts"))
        return
    first = lines[start][len(margin):]
    if first.startswith("%%") and not re.match(r"%%\w+\?", first):
        if magic_name(first) in PYTHON_CELL_MAGICS:
            syntax.specials.append(Special(start, start, "cell magic"))
            _unit(lines, start + 1, syntax)  # the magic runs its body as IPython input
        else:
            syntax.specials.append(Special(start, len(lines) - 1, "cell magic"))
        return
    first_special = len(syntax.specials)
    _lines(lines, start, syntax)
    if margin:
        # IPython removes the common indentation. Python reads the lines the same way after
        # a block opener, provided the first statement is at exactly that indentation (when it
        # is deeper, IPython fails as Python would without the opener).
        code = _first_code_line(lines, start, syntax.specials[first_special:])
        if code is not None and _LEADING.match(lines[code]).group(0) == margin:
            syntax.indented.append(start)


def _first_code_line(lines: list[str], start: int, specials: list[Special]) -> int | None:
    heads = {s.first for s in specials}
    for k in range(start, len(lines)):
        stripped = lines[k].strip()
        if k in heads or (stripped and not stripped.startswith("#")):
            return k
    return None


def _continued_end(lines: list[str], i: int) -> int:
    """IPython's find_end_of_continued_line: a line ending in a backslash takes in the next."""
    while i + 1 < len(lines) and lines[i].endswith("\\"):
        i += 1
    return i


def _escape_kind(stripped: str) -> str:
    return {"!": "shell", "%": "magic", "?": "help"}.get(stripped[0], "autocall")


def _lines(lines: list[str], start: int, syntax: CellSyntax) -> None:
    """Step 3: the escaped commands, assignments from them and help lines from `start` on."""
    n = len(lines)
    i = start
    depth = 0
    quote: str | None = None  # the closing delimiter of the string we are in
    continued = False  # the previous physical line ended in a backslash (outside strings)
    logical_start = start
    eq_seen = False
    last, comment, at = "", False, start
    while i < n:
        line = lines[i]
        if depth == 0 and quote is None and not continued:
            logical_start, eq_seen = i, False
            stripped = line.lstrip(" \t")
            if stripped[:1] in ESCAPES:
                end = _continued_end(lines, i)
                syntax.specials.append(Special(i, end, _escape_kind(stripped)))
                i = end + 1
                continue
        last = ""  # the last character outside strings and comments
        comment = False
        assignment = False
        j, length = 0, len(line)
        while j < length:
            c = line[j]
            if quote is not None:
                if c == "\\":
                    j += 2
                    continue
                if line.startswith(quote, j):
                    j += len(quote)
                    quote = None
                    last = c
                    continue
                j += 1
                continue
            if c == "#":
                comment = True
                break
            if c in "'\"":
                quote = c * 3 if line.startswith(c * 3, j) else c
                j += len(quote)
                continue
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth = max(0, depth - 1)
            elif (c == "=" and depth == 0 and not eq_seen and line[j + 1:j + 2] != "="
                  and (j == 0 or line[j - 1] not in _OPERATOR_BEFORE_EQ)):
                eq_seen = True
                rest, at = line[j + 1:], i
                while rest.strip(" \t") == "\\" and at + 1 < n:  # `x = \` then `!ls` on the next line
                    at += 1
                    rest = lines[at]
                rest = rest.lstrip(" \t")
                if (rest.startswith("!") or re.match(r"%\s*[A-Za-z_]", rest)) and _assignable(
                        "\n".join(lines[logical_start:i] + [line[:j]])):
                    assignment = True
                    break
            if not c.isspace():
                last = c
            j += 1
        if assignment:
            end = _continued_end(lines, at)
            syntax.specials.append(Special(logical_start, end, "assignment"))
            i, depth, quote, continued = end + 1, 0, None, False
            continue
        if quote is not None and len(quote) == 1:
            # A one-quote string ends with its line unless the newline is escaped; unterminated,
            # it is Python's error to report, and the next line starts afresh.
            if not _escaped_newline(line):
                quote = None
        continued = quote is None and not comment and line.endswith("\\")
        if depth == 0 and quote is None and not continued and not comment and last == "?":
            content = "\n".join(lines[logical_start:i + 1]).strip()
            if _HELP_END.search(content):
                syntax.specials.append(Special(logical_start, i, "help"))
        i += 1
    if depth and quote is None and not comment and last == "?" and i > logical_start:
        # Brackets still open at the end of the cell: IPython's tokens stop there, and a `?`
        # last is help all the same (`foo(bar?`).
        if _HELP_END.search("\n".join(lines[logical_start:i]).strip()):
            syntax.specials.append(Special(logical_start, i - 1, "help"))


def _assignable(target: str) -> bool:
    """Is `target` (the text before the `=`) something Python can assign to? IPython does
    not check: `lambda x=!ls: x` becomes code that does not compile."""
    try:
        compile(target.lstrip(" \t") + " = None", "<target>", "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def _escaped_newline(line: str) -> bool:
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1
