"""Unified diffs that `git apply` accepts byte for byte (CRLF, BOM, any encoding)."""

from __future__ import annotations

import difflib
import os

NO_NEWLINE = b"\\ No newline at end of file\n"


def display_path(path: str, cwd: str | None = None) -> str:
    """The path relative to the current directory, with forward slashes (git's form)."""
    try:
        rel = os.path.relpath(path, cwd or os.getcwd())
    except ValueError:  # another drive on Windows
        rel = path
    return rel.replace(os.sep, "/")


def unified_diff(old: bytes, new: bytes, path: str, context: int = 3) -> bytes:
    """A unified diff of two byte strings with `a/` and `b/` headers. Empty when equal.

    Lines are compared as bytes (decoded as latin-1, which maps every byte to one character),
    so line endings, a BOM and the file's encoding pass through untouched.
    """
    if old == new:
        return b""
    rel = display_path(path)
    a = [line.decode("latin-1") for line in old.splitlines(keepends=True)]
    b = [line.decode("latin-1") for line in new.splitlines(keepends=True)]
    out = bytearray()
    for line in difflib.unified_diff(a, b, f"a/{rel}", f"b/{rel}", n=context, lineterm="\n"):
        raw = line.encode("latin-1")
        out += raw
        if not raw.endswith(b"\n"):
            out += b"\n" + NO_NEWLINE
    return bytes(out)
