"""Public entry points of the rewrite (placeholder: being written now; the API below is stable)."""

from __future__ import annotations

from lora_codemod.config import Config
from lora_codemod.findings import SourceResult


def transform_source(source: bytes, path: str = "<stdin>", config: Config | None = None) -> SourceResult:
    """Apply every enabled rule to `source` in memory. Never touches the file system."""
    return SourceResult(path=path, source=source, output=source)
