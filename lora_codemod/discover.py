"""Turn the paths a user names into the Python files to look at, in a stable order."""

from __future__ import annotations

import os
import shutil
import subprocess
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
    for `*.py`, skipping `excludes`, hidden directories and, inside a git work tree, what git
    ignores (.gitignore, .git/info/exclude, the global excludes). Each file is yielded once."""
    seen: set[str] = set()
    for raw in paths:
        if os.path.isfile(raw):
            candidates: list[str] = [raw]
        elif os.path.isdir(raw):
            candidates = _files_under(raw, excludes)
        else:
            yield Missing(raw)
            continue
        for path in candidates:
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                yield path


def _excluded(rel_dirs: list[str], excludes: frozenset[str]) -> bool:
    return any(part in excludes or part.startswith(".") for part in rel_dirs if part not in (".", ".."))


def _files_under(root: str, excludes: frozenset[str]) -> list[str]:
    listed = _git_visible_files(root)
    if listed is not None:
        found = [
            os.path.normpath(os.path.join(root, rel))
            for rel in listed
            if rel.endswith(".py") and not _excluded(rel.split("/")[:-1], excludes)
        ]
        return sorted(p for p in found if os.path.isfile(p))
    found = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in excludes and not d.startswith("."))
        found += [os.path.normpath(os.path.join(dirpath, f)) for f in sorted(files) if f.endswith(".py")]
    return found


def _git_visible_files(root: str) -> list[str] | None:
    """Paths under `root` (relative to it) that git tracks or would track; None outside a work
    tree or without git, where the plain walk applies."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        # A directory the user names that git ignores as a whole is walked as named.
        ignored = subprocess.run([git, "check-ignore", "-q", "."], cwd=root, capture_output=True, timeout=60)
        if ignored.returncode == 0:
            return None
        proc = subprocess.run(
            [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root, capture_output=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:  # not a work tree (or a bare/odd one): walk instead
        return None
    return [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]
