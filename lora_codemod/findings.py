"""The result model every renderer (text, diff, JSON, SARIF, GitHub annotations) consumes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Status(str, enum.Enum):
    # The rewrite was applied (or would be, under --diff/--check).
    FIXED = "fixed"
    # A likely bug the tool will not rewrite safely: a person has to look.
    REVIEW = "needs review"
    # Deliberately left alone and not a problem (tokenizer save, already fixed, ...).
    SKIPPED = "left alone"


@dataclass(frozen=True)
class Finding:
    code: str  # "LC001"
    path: str  # as the user named it (or --stdin-filename)
    line: int  # 1-based
    col: int  # 1-based
    message: str
    status: Status
    reason: str = ""  # why it was not fixed (REVIEW / SKIPPED); empty for FIXED
    end_line: int = 0  # 1-based, inclusive line of the node's end (0: unknown)
    end_col: int = 0  # 1-based column just past the node's end (0: unknown)
    # A `# lora-codemod: ignore` / `# noqa: LC00N` comment on its line: not applied, not counted.
    suppressed: bool = False
    cell: int = 0  # a notebook's cell (1-based, every cell counted); `line`/`col` are in the cell
    # The fix changes what runs on an approximation (ruff's "unsafe fix"): applied only with
    # --unsafe-fixes; without it the finding needs review.
    unsafe: bool = False

    def location(self) -> str:
        """`path:line:col`, or `path:cell N:line:col` in a notebook."""
        if self.cell:
            return f"{self.path}:cell {self.cell}:{self.line}:{self.col}"
        return f"{self.path}:{self.line}:{self.col}"

    def format(self, dry_run: bool = False) -> str:
        """`path:line:col: CODE message [fixed]`; `[would fix]` when nothing is written."""
        if self.suppressed:  # not applied: what it would have been
            what = "would fix" if self.status is Status.FIXED else self.status.value
            tail = f"[suppressed: {what}{': ' + self.reason if self.reason else ''}]"
        elif self.status is Status.FIXED:
            tail = "[would fix" if dry_run else "[fixed"
            tail += " (unsafe fix)]" if self.unsafe else "]"
        else:
            tail = f"[{self.status.value}: {self.reason}]"
        return f"{self.location()}: {self.code} {self.message} {tail}"

    def as_dict(self) -> dict:
        return {
            "code": self.code,
            "path": self.path,
            "line": self.line,
            "column": self.col,
            "message": self.message,
            "status": self.status.value,
            "reason": self.reason,
            "end_line": self.end_line or self.line,
            "end_column": self.end_col or self.col,
            "suppressed": self.suppressed,
            "cell": self.cell or None,
            "unsafe_fix": self.unsafe,
        }


@dataclass(frozen=True)
class SourceError:
    """A file that could not be read or parsed. Renders as one line with path and position."""

    path: str
    message: str
    line: int = 0
    col: int = 0

    def format(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}" if self.line else self.path
        return f"{where}: error: {' '.join(self.message.split())}"  # always one line


@dataclass
class SourceResult:
    """What the transform made of one source: the single value the engine, CLI and smoke share."""

    path: str
    source: bytes
    output: bytes
    findings: list[Finding] = field(default_factory=list)
    error: SourceError | None = None
    skipped: str = ""  # why the file was not analysed at all: "skip-file" or "generated"

    @property
    def changed(self) -> bool:
        return self.error is None and self.output != self.source

    @property
    def needs_review(self) -> bool:
        return any(f.status is Status.REVIEW and not f.suppressed for f in self.findings)
