"""Settings for one run: the engine's `Config`, and the `[tool.lora-codemod]` table of a
pyproject.toml (or `--config FILE`) resolved against the command line (`Settings`).

Precedence, per key: the command line, then the configuration file, then the default.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field

# A word found inside a name part, key or string value: `use_lora`, `use_peft_lora`, `use_qlora`,
# `peft`, `finetuning_type == "lora"` (contract v2, "LoRA block").
DEFAULT_FLAG_PATTERN = r"lora|peft"

RULE_CODES = ("LC001", "LC002", "LC003", "LC004", "LC005", "LC006", "LC007", "LC008")
OUTPUT_FORMATS = ("text", "json", "sarif", "github")

# Directories that never hold the user's training scripts, only tools, caches and installs: the
# default of `exclude` (`extend-exclude` adds to it; `exclude` replaces it).
DEFAULT_EXCLUDE = (
    ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", "__pycache__", "node_modules", "site-packages", "build", "dist", ".eggs",
)

TABLE = "tool.lora-codemod"


@dataclass(frozen=True)
class Config:
    """What the engine and the rules need (picklable: it is sent to pool workers)."""

    flag_pattern: str = DEFAULT_FLAG_PATTERN
    select: frozenset[str] | None = None  # None: every rule
    ignore: frozenset[str] = field(default_factory=frozenset)
    trainer_classes: frozenset[str] = field(default_factory=frozenset)  # extra Trainer class names
    include_generated: bool = False  # analyse files marked @generated too
    # Apply fixes that change what runs on an approximation (ruff's "unsafe fixes"); without it
    # such a finding needs review and says that `--unsafe-fixes` applies it.
    unsafe_fixes: bool = False

    def __post_init__(self) -> None:
        try:
            re.compile(self.flag_pattern)
        except re.error as exc:
            raise ValueError(f"invalid --flag-pattern {self.flag_pattern!r}: {exc}") from None

    @property
    def flag_regex(self) -> re.Pattern[str]:
        # Case-insensitive: a module constant `USE_LORA` is the same flag as `args.use_lora`.
        return re.compile(self.flag_pattern, re.IGNORECASE)

    def enabled(self, code: str) -> bool:
        if code in self.ignore:
            return False
        return self.select is None or code in self.select


class ConfigError(Exception):
    """A configuration file that cannot be used: one line naming the file and the key (exit 2)."""


# ---- reading [tool.lora-codemod] ----------------------------------------------------------------

def _toml_load(path: str) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: error: cannot read the configuration: {(exc.strerror or str(exc)).lower()}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: error: not valid TOML: {exc}") from None


def _table(data: dict, path: str, pyproject: bool) -> dict | None:
    if not pyproject:  # --config FILE: a lora-codemod.toml with top-level keys, or a pyproject
        if "tool" in data and isinstance(data["tool"], dict) and "lora-codemod" in data["tool"]:
            data = data["tool"]["lora-codemod"]
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: error: [{TABLE}] must be a table")
        return data
    table = data.get("tool", {}).get("lora-codemod") if isinstance(data.get("tool"), dict) else None
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"{path}: error: [{TABLE}] must be a table")
    return table


def shown_path(path: str) -> str:
    """Relative to the current directory when under it (messages name files as users do)."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def find_pyproject(start: str) -> str | None:
    """The nearest pyproject.toml upwards from `start` (a file: from its directory) that has a
    [tool.lora-codemod] table; pyproject files without one are passed over, as ruff does."""
    current = os.path.abspath(start)
    if not os.path.isdir(current):
        current = os.path.dirname(current)
    while True:
        candidate = os.path.join(current, "pyproject.toml")
        if os.path.isfile(candidate):
            try:
                with open(candidate, "rb") as handle:
                    has_table = b"lora-codemod" in handle.read()
            except OSError:
                has_table = False
            shown = shown_path(candidate)
            if has_table and _table(_toml_load(shown), shown, pyproject=True) is not None:
                return candidate
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _codes(value, key: str, path: str) -> frozenset[str]:
    items = _strings(value, key, path)
    codes = frozenset(c.strip().upper() for c in items)
    unknown = sorted(codes - set(RULE_CODES))
    if unknown:
        raise ConfigError(f"{path}: error: {key}: unknown rule code(s) {', '.join(unknown)} "
                          f"(known: {', '.join(RULE_CODES)})")
    return codes


def _strings(value, key: str, path: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: error: {key}: expected a list of strings, got {_shown(value)}")
    return tuple(value)


def _shown(value) -> str:
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    return text if len(text) <= 60 else text[:57] + "..."


def _check_value(key: str, value, path: str):
    if key in ("select", "ignore"):
        return _codes(value, key, path)
    if key == "flag-pattern":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: error: {key}: expected a regular expression string, got {_shown(value)}")
        try:
            re.compile(value)
        except re.error as exc:
            raise ConfigError(f"{path}: error: {key}: invalid regular expression {value!r}: {exc}") from None
        return value
    if key in ("exclude", "extend-exclude"):
        return _strings(value, key, path)
    if key == "output-format":
        if value not in OUTPUT_FORMATS:
            raise ConfigError(f"{path}: error: {key}: expected one of {', '.join(OUTPUT_FORMATS)}, got {_shown(value)}")
        return value
    if key == "unsafe-fixes":
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: error: {key}: expected true or false, got {_shown(value)}")
        return value
    if key == "cache-dir":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: error: {key}: expected a directory path string, got {_shown(value)}")
        return value
    if key == "trainer-classes":
        names = _strings(value, key, path)
        bad = [n for n in names if not n.isidentifier()]
        if bad:
            raise ConfigError(f"{path}: error: {key}: not a class name: {bad[0]!r}")
        return frozenset(names)
    raise AssertionError(key)


KEYS = ("select", "ignore", "flag-pattern", "exclude", "extend-exclude", "output-format", "trainer-classes",
        "unsafe-fixes", "cache-dir")


def read_config_file(path: str, pyproject: bool | None = None) -> dict:
    """The checked values of a configuration file's table (keys as written, e.g. `flag-pattern`)."""
    if pyproject is None:
        pyproject = os.path.basename(path) == "pyproject.toml"
    table = _table(_toml_load(path), path, pyproject) or {}
    values = {}
    for key, value in table.items():
        if key not in KEYS:
            hint = f" (did you mean {key.replace('_', '-')!r}?)" if key.replace("_", "-") in KEYS else ""
            raise ConfigError(f"{path}: error: unknown key {key!r} in [{TABLE}]{hint} "
                              f"(known: {', '.join(KEYS)})")
        values[key] = _check_value(key, value, path)
    return values


# ---- resolving: command line > file > default ---------------------------------------------------

@dataclass
class Settings:
    """The resolved run: every key's value and where it came from."""

    values: dict = field(default_factory=dict)
    origins: dict = field(default_factory=dict)  # key -> "default" | "command line" | "<file>"
    config_file: str | None = None

    def __getitem__(self, key: str):
        return self.values[key]

    @property
    def config_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.config_file)) if self.config_file else os.getcwd()

    @property
    def cache_dir(self) -> str:
        """`cache-dir`, relative to the configuration's directory (else the current one)."""
        return os.path.join(self.config_dir, os.path.expanduser(self["cache-dir"]))

    def engine_config(self, include_generated: bool = False) -> Config:
        return Config(flag_pattern=self["flag-pattern"], select=self["select"], ignore=self["ignore"],
                      trainer_classes=self["trainer-classes"], include_generated=include_generated,
                      unsafe_fixes=self["unsafe-fixes"])


DEFAULTS = {
    "select": None,
    "ignore": frozenset(),
    "flag-pattern": DEFAULT_FLAG_PATTERN,
    "exclude": DEFAULT_EXCLUDE,
    "extend-exclude": (),
    "output-format": "text",
    "trainer-classes": frozenset(),
    "unsafe-fixes": False,
    "cache-dir": ".lora_codemod_cache",
}


def resolve(paths: list[str], config_path: str | None, cli: dict, isolated: bool = False) -> Settings:
    """`cli`: the keys given on the command line (None for not given)."""
    settings = Settings()
    file_values: dict = {}
    if config_path is not None:
        if not os.path.isfile(config_path):
            raise ConfigError(f"{config_path}: error: --config: no such file")
        settings.config_file = config_path
        file_values = read_config_file(config_path)
    elif not isolated:
        start = next((p for p in paths if p != "-"), ".")
        found = find_pyproject(start)
        if found is not None:
            settings.config_file = shown_path(found)
            file_values = read_config_file(settings.config_file)
    for key, default in DEFAULTS.items():
        if cli.get(key) is not None:
            settings.values[key], settings.origins[key] = cli[key], "command line"
        elif key in file_values:
            settings.values[key], settings.origins[key] = file_values[key], settings.config_file
        else:
            settings.values[key], settings.origins[key] = default, "default"
    return settings


def shown_value(value) -> str:
    """A value as `lora-codemod config` prints it (TOML-like)."""
    if value is None:
        return "(every rule)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (frozenset, set)):
        value = sorted(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else str(value)
