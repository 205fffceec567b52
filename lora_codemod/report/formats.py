"""Machine-readable renderers of a `fix` run: JSON, SARIF 2.1.0 and GitHub workflow commands.

Each consumes `FileReport`s: what a `SourceResult` leaves once its bytes are no longer needed
(path, changed, error, findings, and the edits as line hunks).
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from urllib.parse import quote

from lora_codemod import __version__
from lora_codemod.findings import Finding, SourceError, SourceResult, Status
from lora_codemod.report.diff import display_path

JSON_SCHEMA_VERSION = 1
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
GITHUB_LIMIT = 10  # annotations of each level GitHub shows per step


@dataclass(frozen=True)
class Edit:
    """Lines `start_line`..`end_line` (1-based, inclusive) of the original file are replaced by
    `replacement`; `end_line == start_line - 1` is an insertion before `start_line`."""

    start_line: int
    end_line: int
    replacement: str
    end_column: int = 1  # SARIF: column just past the replaced text on end_line + 1 (see sarif_region)

    def as_dict(self) -> dict:
        return {"start_line": self.start_line, "end_line": self.end_line, "replacement": self.replacement}


def _text(raw: str) -> str:
    """Lines are diffed as latin-1 (byte-exact); shown as UTF-8 text."""
    return raw.encode("latin-1").decode("utf-8", errors="replace")


def hunks(source: bytes, output: bytes) -> list[Edit]:
    if source == output:
        return []
    a = source.decode("latin-1").splitlines(keepends=True)
    b = output.decode("latin-1").splitlines(keepends=True)
    edits = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            edits.append(Edit(i1 + 1, i2, _text("".join(b[j1:j2]))))
    return edits


@dataclass
class FileReport:
    path: str
    changed: bool
    error: SourceError | None
    findings: list[Finding]
    skipped: str = ""
    lines: int = 0  # of the original file
    last_line_length: int = 0
    edits: list[Edit] = field(default_factory=list)
    fixes: dict[int, list[Edit]] = field(default_factory=dict)  # index in findings -> its edits
    diff: str | None = None

    @classmethod
    def of(cls, result: SourceResult, diff: bytes | None = None) -> FileReport:
        report = cls(result.path, result.changed, result.error, list(result.findings), result.skipped)
        if result.changed:
            report.edits = hunks(result.source, result.output)
            lines = result.source.splitlines(keepends=True)
            report.lines = len(lines)
            report.last_line_length = len(lines[-1].decode("utf-8", "replace")) if lines else 0
            report.fixes = _assign(report.findings, report.edits, result.path)
        if diff is not None:
            report.diff = diff.decode("utf-8", errors="replace")
        return report


def _assign(findings: list[Finding], edits: list[Edit], path: str) -> dict[int, list[Edit]]:
    """Each hunk goes to exactly one fixed finding (the one whose lines it touches, else the
    nearest): applying every finding's fix gives the whole rewrite, and none twice."""
    fixed = [(i, f) for i, f in enumerate(findings)
             if f.status is Status.FIXED and not f.suppressed and f.path == path]
    out: dict[int, list[Edit]] = {}
    if not fixed:
        return out
    for edit in edits:
        lo, hi = edit.start_line, max(edit.end_line, edit.start_line)

        def distance(item: tuple[int, Finding], lo: int = lo, hi: int = hi) -> tuple[int, int]:
            f = item[1]
            end = f.end_line or f.line
            if f.line <= hi and end >= lo:
                return (0, f.line)
            return (min(abs(f.line - hi), abs(end - lo)), f.line)

        index = min(fixed, key=distance)[0]
        out.setdefault(index, []).append(edit)
    return out


def _counts(reports: list[FileReport]) -> dict:
    summary = {"files": len(reports), "changed": 0, "fixed": 0, "needs_review": 0, "left_alone": 0,
               "suppressed": 0, "errors": 0, "skipped": 0}
    rules: dict[str, dict] = {}
    for report in reports:
        summary["changed"] += report.changed
        summary["errors"] += report.error is not None
        summary["skipped"] += bool(report.skipped)
        for f in report.findings:
            key = "suppressed" if f.suppressed else {
                Status.FIXED: "fixed", Status.REVIEW: "needs_review", Status.SKIPPED: "left_alone"}[f.status]
            summary[key] += 1
            per = rules.setdefault(f.code, {"fixed": 0, "needs_review": 0, "left_alone": 0, "suppressed": 0})
            per[key] += 1
    summary["rules"] = dict(sorted(rules.items()))
    return summary


# ---- JSON ---------------------------------------------------------------------------------------

def finding_dict(f: Finding, fix: list[Edit] | None) -> dict:
    return {
        "rule": f.code,
        "path": display_path(f.path) if os.path.isabs(f.path) else f.path,
        "line": f.line,
        "column": f.col,
        "end_line": f.end_line or f.line,
        "end_column": f.end_col or f.col,
        "message": f.message,
        "status": f.status.value,
        "fixed": f.status is Status.FIXED and not f.suppressed,
        "reason": f.reason,
        "suppressed": f.suppressed,
        "cell": f.cell or None,
        "fix": [e.as_dict() for e in fix] if fix else None,
        # ruff's word: "safe", or "unsafe" (applied only with --unsafe-fixes); None: no fix
        "fix_applicability": ("unsafe" if f.unsafe else "safe") if f.status is Status.FIXED or f.unsafe else None,
    }


def render_json(reports: list[FileReport], mode: str) -> str:
    """mode: "fix" (files written), "check" or "diff" (nothing written)."""
    files = []
    for report in reports:
        if not (report.findings or report.changed or report.error or report.skipped):
            continue  # a clean file: counted in the summary only
        entry = {
            "path": report.path,
            "changed": report.changed,
            "written": report.changed and mode == "fix",
            "skipped": report.skipped or None,
            "error": None if report.error is None else {
                "message": " ".join(report.error.message.split()), "line": report.error.line or None,
                "column": report.error.col or None},
            "findings": [finding_dict(f, report.fixes.get(i)) for i, f in enumerate(report.findings)],
        }
        if report.diff is not None:
            entry["diff"] = report.diff
        files.append(entry)
    document = {
        "schema_version": JSON_SCHEMA_VERSION,
        "tool": {"name": "lora-codemod", "version": __version__},
        "mode": mode,
        "files": files,
        "summary": _counts(reports),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# ---- SARIF 2.1.0 --------------------------------------------------------------------------------

def _uri(path: str) -> str:
    return quote(display_path(path), safe="/")


def _region(f: Finding) -> dict:
    region = {"startLine": max(f.line, 1), "startColumn": max(f.col, 1)}
    if f.end_line:
        region["endLine"] = max(f.end_line, region["startLine"])
        region["endColumn"] = max(f.end_col, 1)
        if region["endLine"] == region["startLine"] and region["endColumn"] < region["startColumn"]:
            region["endColumn"] = region["startColumn"]
    return region


def sarif_region(edit: Edit, report: FileReport) -> dict:
    """The replaced lines, whole (newline included): from column 1 of start_line to column 1 of
    the line after end_line; at the end of the file, to just past its last character."""
    if edit.end_line < edit.start_line:  # an insertion: an empty region
        line = min(edit.start_line, max(report.lines, 1))
        column = 1 if edit.start_line <= report.lines else report.last_line_length + 1
        return {"startLine": line, "startColumn": 1 if column == 1 else column, "endLine": line, "endColumn": column}
    if edit.end_line < report.lines:
        return {"startLine": edit.start_line, "startColumn": 1, "endLine": edit.end_line + 1, "endColumn": 1}
    return {"startLine": edit.start_line, "startColumn": 1, "endLine": report.lines,
            "endColumn": report.last_line_length + 1}


_LEVEL = {Status.FIXED: "error", Status.REVIEW: "warning", Status.SKIPPED: "note"}


def _rule_descriptors() -> list[dict]:
    from lora_codemod.rules import ALL_RULES

    descriptors = []
    for rule in ALL_RULES:
        body = rule.doc.split("## What it does", 1)[-1].strip().split("\n\n", 1)[0]
        full = " ".join(body.split())
        descriptors.append({
            "id": rule.code,
            "name": rule.name,
            "shortDescription": {"text": rule.summary},
            "fullDescription": {"text": full},
            "help": {"text": f"{rule.summary}.\n\n{rule.doc}", "markdown": f"# {rule.code} ({rule.name})\n\n{rule.doc}"},
            "defaultConfiguration": {"level": "error"},
            "properties": {"tags": ["correctness", "lora", "peft"]},
        })
    return descriptors


def render_sarif(reports: list[FileReport], mode: str) -> str:
    rules = _rule_descriptors()
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    results = []
    notifications = []
    for report in reports:
        if report.error is not None:
            notification = {"level": "error", "message": {"text": " ".join(report.error.message.split())},
                            "locations": [{"physicalLocation": {
                                "artifactLocation": {"uri": _uri(report.path), "uriBaseId": "%SRCROOT%"}}}]}
            if report.error.line:
                notification["locations"][0]["physicalLocation"]["region"] = {
                    "startLine": report.error.line, "startColumn": max(report.error.col, 1)}
            notifications.append(notification)
        for i, f in enumerate(report.findings):
            if f.status is Status.SKIPPED and not f.suppressed:
                continue  # deliberately left alone: not a problem
            tail = {Status.FIXED: ("fixed" if mode == "fix" else "would fix") + (" (unsafe fix)" if f.unsafe else ""),
                    Status.REVIEW: f"needs review: {f.reason}", Status.SKIPPED: f"left alone: {f.reason}"}[f.status]
            where = f"cell {f.cell}, line {f.line}: " if f.cell else ""
            physical = {"artifactLocation": {"uri": _uri(f.path), "uriBaseId": "%SRCROOT%"}}
            if not f.cell:  # a notebook's lines are not the file's: the cell is named in the message
                physical["region"] = _region(f)
            result = {
                "ruleId": f.code,
                "ruleIndex": index[f.code],
                "level": _LEVEL[f.status],
                "message": {"text": f"{where}{f.message} [{tail}]"},
                "locations": [{"physicalLocation": physical}],
                "properties": {"status": f.status.value, "reason": f.reason, **({"cell": f.cell} if f.cell else {}),
                               **({"fixApplicability": "unsafe"} if f.unsafe else {})},
            }
            if f.suppressed:
                result["suppressions"] = [{"kind": "inSource"}]
            fix = report.fixes.get(i)
            if fix and not report.path.endswith(".ipynb"):
                result["fixes"] = [{
                    "description": {"text": f"{f.code}: the rewrite lora-codemod {'applied' if mode == 'fix' else 'would apply'}"},
                    "artifactChanges": [{
                        "artifactLocation": {"uri": _uri(report.path), "uriBaseId": "%SRCROOT%"},
                        "replacements": [{"deletedRegion": sarif_region(e, report),
                                          "insertedContent": {"text": e.replacement}} for e in fix],
                    }],
                }]
            results.append(result)
    root = os.getcwd().replace(os.sep, "/")
    document = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "lora-codemod", "version": __version__, "semanticVersion": __version__,
                                "rules": rules}},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": "file://" + quote(root if root.startswith("/") else "/" + root)
                                                 + "/"}},
            "invocations": [{"executionSuccessful": not notifications,
                             "toolExecutionNotifications": notifications}],
            "results": results,
        }],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# ---- GitHub workflow commands -------------------------------------------------------------------

def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_line(f: Finding, mode: str) -> str | None:
    """`::error file=...,line=...,col=...,endLine=...,endColumn=...,title=LC001::message`: an
    error for a finding that needs (or got) the fix, a warning for one that needs review;
    nothing for what is left alone or suppressed."""
    if f.suppressed or f.status is Status.SKIPPED:
        return None
    level = "error" if f.status is Status.FIXED else "warning"
    tail = ("fixed" if mode == "fix" else "would fix") if f.status is Status.FIXED else f"needs review: {f.reason}"
    if f.cell:  # a notebook: the cell's lines are not the file's
        return (f"::{level} file={escape_property(display_path(f.path))},title={escape_property(f.code)}::"
                + escape_data(f"cell {f.cell}:{f.line}:{f.col}: {f.message} [{tail}]"))
    props = [f"file={escape_property(display_path(f.path))}", f"line={f.line}", f"col={f.col}"]
    if f.end_line:
        props += [f"endLine={f.end_line}"]
        if f.end_line == f.line:
            props += [f"endColumn={f.end_col}"]
    props.append(f"title={escape_property(f.code)}")
    return f"::{level} {','.join(props)}::{escape_data(f'{f.message} [{tail}]')}"


def github_error_line(error: SourceError) -> str:
    props = [f"file={escape_property(display_path(error.path))}"]
    if error.line:
        props += [f"line={error.line}", f"col={max(error.col, 1)}"]
    props.append("title=lora-codemod")
    return f"::error {','.join(props)}::{escape_data(' '.join(error.message.split()))}"


def github_limit_note(errors: int, warnings: int) -> str | None:
    if errors <= GITHUB_LIMIT and warnings <= GITHUB_LIMIT:
        return None
    return (f"::notice title=lora-codemod::{errors} error and {warnings} warning annotations were printed; GitHub "
            f"shows only the first {GITHUB_LIMIT} of each per step. Upload --output-format sarif to code scanning "
            "to see them all.")
