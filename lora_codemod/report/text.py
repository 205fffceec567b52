"""The human output of `fix`: one line per finding, errors, a one-line total, coloured diffs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

from lora_codemod.findings import Finding, SourceError, Status


@dataclass
class Totals:
    files: int = 0
    changed: int = 0
    fixed: int = 0
    review: int = 0
    skipped: int = 0
    errors: int = 0

    def add(self, findings: list[Finding], changed: bool, error: bool) -> None:
        self.files += 1
        self.changed += changed
        self.errors += error
        for finding in findings:
            if finding.status is Status.FIXED:
                self.fixed += 1
            elif finding.status is Status.REVIEW:
                self.review += 1
            else:
                self.skipped += 1

    def summary(self, mode: str) -> str:
        """mode: "fix" (files were written), "check"/"diff" (nothing written)."""
        verb = "fixed" if mode == "fix" else "would fix"
        files = "file" if self.files == 1 else "files"
        changed = "file" if self.changed == 1 else "files"
        parts = [
            f"{self.fixed} {verb}" + (f" in {self.changed} {changed}" if self.changed else ""),
            f"{self.review} need review",
            f"{self.skipped} left alone",
        ]
        if self.errors:
            parts.append(f"{self.errors} error{'s' if self.errors != 1 else ''}")
        return f"{', '.join(parts)} ({self.files} {files} checked)."


def _style_for(line: bytes) -> str | None:
    if line.startswith((b"+++", b"---")):
        return "bold"
    if line.startswith(b"@@"):
        return "cyan"
    if line.startswith(b"+"):
        return "green"
    if line.startswith(b"-"):
        return "red"
    return None


@dataclass
class Printer:
    """Writes to real streams; colour only through rich, only when asked."""

    out: IO[bytes]
    err: IO[str]
    color: bool = False

    def diff(self, diff: bytes) -> None:
        if not diff:
            return
        if not self.color:
            self.out.write(diff)
            self.out.flush()
            return
        from rich.console import Console
        from rich.text import Text

        console = Console(force_terminal=True, highlight=False, soft_wrap=True)
        for line in diff.splitlines():
            text = line.decode("utf-8", errors="replace").rstrip("\r")
            console.print(Text(text, style=_style_for(line) or ""))

    def line(self, text: str, to_err: bool = False) -> None:
        if to_err:
            self.err.write(text + "\n")
            self.err.flush()
        else:
            self.out.write((text + "\n").encode("utf-8", errors="replace"))
            self.out.flush()

    def error(self, error: SourceError) -> None:
        self.err.write(error.format() + "\n")
        self.err.flush()
