"""`lora-codemod fix`: discover files, transform them, print findings/diffs, write, exit code."""

from __future__ import annotations

import sys

from lora_codemod.config import Config
from lora_codemod.discover import Missing, iter_python_files
from lora_codemod.engine import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, process_file, transform_source
from lora_codemod.findings import SourceError, SourceResult, Status
from lora_codemod.report.diff import unified_diff
from lora_codemod.report.text import Printer, Totals


def run_fix(paths: list[str], config: Config, *, diff: bool, check: bool, quiet: bool, color: bool,
            stdin_filename: str | None) -> int:
    dry_run = diff or check
    printer = Printer(out=sys.stdout.buffer, err=sys.stderr, color=color)
    totals = Totals()
    stdin_mode = paths == ["-"]
    # stdout carries code (stdin fix mode) or a diff: findings then go to stderr.
    findings_to_err = diff or (stdin_mode and not check)

    def report(result: SourceResult) -> None:
        totals.add(result.findings, result.changed, result.error is not None)
        if result.error is not None:
            printer.error(result.error)
        for finding in result.findings:
            if quiet and finding.status is Status.SKIPPED:
                continue
            printer.line(finding.format(dry_run=dry_run), to_err=findings_to_err)
        if diff:
            printer.diff(unified_diff(result.source, result.output, result.path))

    if stdin_mode:
        name = stdin_filename or "<stdin>"
        source = sys.stdin.buffer.read()
        result = transform_source(source, name, config)
        report(result)
        if not dry_run:
            sys.stdout.buffer.write(result.output)
            sys.stdout.buffer.flush()
    else:
        for item in iter_python_files(paths):
            if isinstance(item, Missing):
                error = SourceError(item.path, "no such file or directory")
                report(SourceResult(path=item.path, source=b"", output=b"", error=error))
                continue
            outcome = process_file(item, config, write=not dry_run)
            report(outcome.result)

    if not quiet:
        printer.line(totals.summary("check" if dry_run else "fix"), to_err=findings_to_err)
    if totals.errors:
        return EXIT_ERROR
    if totals.review or (dry_run and totals.changed):
        return EXIT_FINDINGS
    return EXIT_OK
