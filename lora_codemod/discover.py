"""Turn the paths a user names into the Python files to look at, in a stable order."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

# Directories that never hold the user's training scripts, only tools, caches and installs.
DEFAULT_EXCLUDES = frozenset({
    ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", "__pycache__", "node_modules", "site-packages", "build", "dist", ".eggs",
})


@dataclass(frozen=True)
class Missing:
    path: str


def iter_python_files(paths: list[str], excludes: frozenset[str] = DEFAULT_EXCLUDES) -> Iterator[str | Missing]:
    """Files named explicitly are always yielded (whatever their suffix); directories are walked
    for `*.py`, skipping `excludes` and hidden directories. Each file is yielded once."""
    seen: set[str] = set()
    for raw in paths:
        if os.path.isfile(raw):
            key = os.path.realpath(raw)
            if key not in seen:
                seen.add(key)
                yield raw
            continue
        if not os.path.isdir(raw):
            yield Missing(raw)
            continue
        for root, dirs, files in os.walk(raw):
            dirs[:] = sorted(d for d in dirs if d not in excludes and not d.startswith("."))
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(root, name)
                key = os.path.realpath(path)
                if key not in seen:
                    seen.add(key)
                    yield os.path.normpath(path)
