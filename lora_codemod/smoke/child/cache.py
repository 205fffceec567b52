"""The tiny model and the hub stand-in directories, made once per environment and kept in a cache.

What is written depends only on the child's library versions and on this package's code, so an
entry is keyed by the family, the transformers and tokenizers versions, and a fingerprint of the
modules that write it: another environment (`--python`) or another lora-codemod gets its own.

The cache lives in the user's cache directory (`$XDG_CACHE_HOME/lora-codemod`, `~/.cache/...`,
`~/Library/Caches/...`, `%LOCALAPPDATA%\\lora-codemod\\Cache`); `LORA_CODEMOD_CACHE_DIR` moves it.
Entries appear atomically (built beside, then renamed), so ranks and runs that start together
never read half an entry; a cache that cannot be written is not an error, the entry is built
where the run needs it instead. Deleting the directory is always safe.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

CACHE_ENV = "LORA_CODEMOD_CACHE_DIR"
COMPLETE = ".complete"  # written last into an entry; an entry without it is not used
# The modules whose code decides what an entry holds.
FINGERPRINTED = ("tiny_model.py", "families.py", "spm.py", "cache.py")


def default_root() -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "lora-codemod" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "lora-codemod"
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "lora-codemod"


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "none"


def code_fingerprint() -> str:
    digest = hashlib.sha1()
    here = Path(__file__).resolve().parent
    for name in FINGERPRINTED:
        digest.update(name.encode())
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:10]


def entry_key(family: str) -> str:
    """`llama-transformers5.25.0-tokenizers0.22.1-<code>`: one entry per family and environment."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in family)
    return f"{safe}-transformers{_version('transformers')}-tokenizers{_version('tokenizers')}-{code_fingerprint()}"


def _complete(directory: Path) -> bool:
    return (directory / COMPLETE).is_file()


def _publish(staging: Path, target: Path) -> None:
    """Rename `staging` to `target`; if another process published first, keep theirs."""
    try:
        os.rename(staging, target)
        return
    except OSError:
        if _complete(target):
            return
    shutil.rmtree(target, ignore_errors=True)  # an incomplete leftover (a run killed while copying)
    try:
        os.rename(staging, target)
    except OSError:
        if not _complete(target):
            raise


def cached(root: Path, key: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """The entry `root/key`, built by `build(directory)` if it is not there: (path, was it there)."""
    target = root / key
    if _complete(target):
        return target, True
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        build(staging)
        (staging / COMPLETE).write_text(key + "\n", encoding="utf-8")
        _publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, False


def copy_entry(source: Path, destination: Path) -> None:
    """A private copy of an entry (a script may write into its model directory; the cache stays clean)."""
    if destination.exists():
        return  # another rank, or the other mode of --compare, made it
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(COMPLETE))
        try:
            os.rename(staging, destination)
        except OSError:
            if not destination.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def materialise(root: str | Path | None, family: str, build: Callable[[Path], None], destination: Path) -> bool:
    """Put the family's entry at `destination`, from the cache when it is there. True: it was cached.

    With no cache root, or one that cannot be written, the entry is built at `destination` directly.
    """
    if destination.exists():
        return True
    if root is not None:
        try:
            entry, was_there = cached(Path(root), entry_key(family), build)
        except OSError:
            pass
        else:
            copy_entry(entry, destination)
            return was_there
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    try:
        build(staging)
        try:
            os.rename(staging, destination)
        except OSError:
            if not destination.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return False
