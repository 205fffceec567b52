"""Per-file results, cached as ruff caches its own (`.ruff_cache`).

An entry is the result of one file: its findings, its rewrite (when it has one), its error or
skip reason. Its key is everything the result depends on:

- the file's bytes (SHA-256) and the path it was named by (messages and some rules use it);
- the tool: its version and a hash of its own analysis, rules and engine sources (a
  development checkout changes them without changing the version);
- every setting that changes results (the engine's `Config`: rules, flag pattern, trainer
  classes, unsafe fixes, generated files);
- LC007's DeepSpeed configs beside the file and those the file names (`*.json`, `*.yaml`,
  `*.yml` in its directory and `configs/`, each by name, size, mtime and inode).

Entries live under `<root>/.lora_codemod_cache/<tool key>/`, one JSON file each, written to a
temp file and renamed into place (two runs at once never see half an entry). An entry that
cannot be read, does not parse, or is not ours is a miss. A cache directory that cannot be
written is a warning, once, and the run goes on uncached. A hit is only a result: `fix` still
writes through the engine, which checks the bytes on disk before it replaces a file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable

from lora_codemod import __version__
from lora_codemod.config import Config
from lora_codemod.findings import Finding, SourceError, SourceResult, Status

DIRECTORY = ".lora_codemod_cache"
SCHEMA = 1
_CONFIG_FILES = re.compile(r"""["']([^"'\s]+\.(?:json|ya?ml))["']""")
# Errors that are not a property of the file: never cached.
_TRANSIENT = ("internal error", "worker process", "out of memory", "deleted", "changed on disk", "cannot read")


def disabled_by_environment() -> bool:
    value = os.environ.get("LORA_CODEMOD_NO_CACHE", "")
    return value not in ("", "0", "false", "no")


def _tool_key() -> str:
    """The version and the sources whose change can change a result (not the smoke runner's)."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256(f"{__version__}:{SCHEMA}".encode())
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith("smoke/"):
            continue
        digest.update(relative.encode())
        digest.update(path.read_bytes())
    return f"{__version__}-{digest.hexdigest()[:16]}"


def _settings_key(config: Config) -> str:
    values = {f.name: getattr(config, f.name) for f in fields(config)}
    shown = {k: sorted(v) if isinstance(v, (set, frozenset)) else v for k, v in values.items()}
    return json.dumps(shown, sort_keys=True, default=str)


class ResultCache:
    def __init__(self, directory: str, config: Config, warn: Callable[[str], None] | None = None) -> None:
        self.root = directory
        self._directory: str | None = None
        self.settings = _settings_key(config)
        self.lc007 = config.enabled("LC007")
        self.warn = warn
        self.writable = True
        self._clean: dict[str, list[int]] | None = None  # path -> stat of a file the text test passed over
        self._clean_seen: dict[str, list[int]] = {}

    # -- files no rule can act on ---------------------------------------------------------------
    # Most files of a tree fail the text test. Those that cannot depend on anything but their own
    # bytes (no save call: LC007's configs beside a file only matter to files that save) are
    # remembered by their stat (size, mtime, ctime, inode: an edit always changes ctime), so a
    # second run does not even read them.
    @staticmethod
    def _stat_key(st: os.stat_result) -> list[int]:
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]

    def _clean_file(self) -> str:
        return os.path.join(self.directory, "clean-" + hashlib.sha256(self.settings.encode()).hexdigest()[:16] + ".json")

    def known_clean(self, path: str) -> bool:
        if self._clean is None:
            try:
                with open(self._clean_file(), "rb") as handle:
                    data = json.loads(handle.read())
                self._clean = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._clean = {}
        known = self._clean.get(os.path.abspath(path))
        if known is None:
            return False
        try:
            st = os.stat(path)
        except OSError:
            return False
        if known == self._stat_key(st):
            self._clean_seen[os.path.abspath(path)] = known
            return True
        return False

    def mark_clean(self, path: str, source: bytes, st: os.stat_result) -> None:
        if b"save_pretrained" not in source and b"save_model" not in source:
            self._clean_seen[os.path.abspath(path)] = self._stat_key(st)

    def flush(self) -> None:
        """Write what this run learnt about clean files (merged with what others wrote)."""
        if not self.writable or not self._clean_seen:
            return
        known = dict(self._clean or {})
        known.update(self._clean_seen)
        if known == self._clean:
            return
        self._write(self._clean_file(), known)

    # -- keys -------------------------------------------------------------------------------
    def key(self, path: str, source: bytes) -> str:
        digest = hashlib.sha256()
        for part in (self.settings, path, hashlib.sha256(source).hexdigest(), self._beside(path, source)):
            digest.update(part.encode("utf-8", "surrogateescape"))
            digest.update(b"\0")
        return digest.hexdigest()

    def _beside(self, path: str, source: bytes) -> str:
        """What LC007 may read besides the file: by name, size, mtime and inode."""
        if not self.lc007:
            return ""
        base = os.path.dirname(os.path.abspath(path))
        names = set()
        for folder in (base, os.path.join(base, "configs")):
            try:
                names |= {os.path.join(folder, n) for n in os.listdir(folder)
                          if n.endswith((".json", ".yaml", ".yml"))}
            except OSError:
                pass
        text = source.decode("utf-8", "replace")
        names |= {os.path.normpath(os.path.join(base, m)) for m in _CONFIG_FILES.findall(text)}
        parts = []
        for name in sorted(names):
            try:
                st = os.stat(name)
            except OSError:
                parts.append(f"{name}:-")
                continue
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
        return "|".join(parts)

    @property
    def directory(self) -> str:
        if self._directory is None:  # hashed only once a file needs the cache
            self._directory = os.path.join(self.root, _tool_key())
        return self._directory

    def _entry(self, key: str) -> str:
        return os.path.join(self.directory, key[:2], key + ".json")

    # -- reading and writing ----------------------------------------------------------------
    def get(self, key: str, path: str, source: bytes) -> SourceResult | None:
        try:
            with open(self._entry(key), "rb") as handle:
                data = json.loads(handle.read())
            if data.get("schema") != SCHEMA or data.get("key") != key:
                raise ValueError("not ours")
            output = source if data["output"] is None else base64.b64decode(data["output"], validate=True)
            findings = [_finding(f) for f in data["findings"]]
            error = SourceError(**data["error"]) if data["error"] is not None else None
            result = SourceResult(path=path, source=source, output=output, findings=findings, error=error,
                                  skipped=str(data["skipped"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # absent, corrupt, truncated, foreign
            return None
        return result

    def put(self, key: str, result: SourceResult) -> None:
        if not self.writable:
            return
        if result.error is not None and any(word in result.error.message for word in _TRANSIENT):
            return
        data = {
            "schema": SCHEMA,
            "key": key,
            "output": None if result.output == result.source else base64.b64encode(result.output).decode(),
            "findings": [_finding_data(f) for f in result.findings],
            "error": asdict(result.error) if result.error is not None else None,
            "skipped": result.skipped,
        }
        self._write(self._entry(key), data)

    def _write(self, target: str, data: object) -> None:
        """A temp file beside `target`, renamed over it; a failure turns the cache off, once."""
        tmp = f"{target}.{os.getpid()}.tmp"
        try:
            self._prepare()
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(data, handle, separators=(",", ":"))
            os.replace(tmp, target)
        except OSError as exc:
            self.writable = False
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if self.warn is not None:
                self.warn(f"warning: cannot write the cache in {self.root} ({(exc.strerror or str(exc)).lower()}); "
                          "running without it")

    def _prepare(self) -> None:
        """The cache root, ignored by git and marked as a cache (CACHEDIR.TAG), as ruff's is."""
        if os.path.isdir(self.directory):
            return
        os.makedirs(self.directory, exist_ok=True)
        for name, text in ((".gitignore", "# Created by lora-codemod automatically.\n*\n"),
                           ("CACHEDIR.TAG", "Signature: 8a477f597d28d172789f06886806bc55\n"
                                            "# This file is a cache directory tag created by lora-codemod.\n")):
            marker = os.path.join(self.root, name)
            if not os.path.exists(marker):
                with open(marker, "w", encoding="utf-8") as handle:
                    handle.write(text)


def _finding_data(f: Finding) -> dict:
    data = asdict(f)
    data["status"] = f.status.value
    return data


def _finding(data: dict) -> Finding:
    data = dict(data)
    data["status"] = Status(data["status"])
    return Finding(**data)
