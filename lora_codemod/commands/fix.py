"""`lora-codemod fix`: discover files, transform them, print findings/diffs, write, exit code."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from lora_codemod.config import Config
from lora_codemod.discover import DEFAULT_EXCLUDES, Excluder, iter_python_files
from lora_codemod.engine import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    run_files,
    transform_source,
)
from lora_codemod.findings import SourceResult, Status
from lora_codemod.report.text import Printer, Totals, colored_finding


class ProgressBar:
    """A transient rich progress bar on stderr: files scanned, parsed, changed, elapsed. Drawn
    only on a terminal, only once a run has lasted 0.3 s, at most ten times a second; erased
    before any other line is printed (rich is imported only then)."""

    DELAY, PERIOD = 0.3, 0.1

    def __init__(self, stream) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.last = 0.0
        self.bar = None
        self.task = None

    def update(self, progress) -> None:
        now = time.monotonic()
        if now - self.started < self.DELAY or now - self.last < self.PERIOD:
            return
        self.last = now
        if self.bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            # auto_refresh=False: no refresh thread, so pool workers are forked from a
            # single-threaded process.
            self.bar = Progress(
                TextColumn("scanned"), BarColumn(), MofNCompleteColumn(),
                TextColumn("parsed {task.fields[parsed]}, changed {task.fields[changed]}"), TimeElapsedColumn(),
                console=Console(file=self.stream), transient=True, auto_refresh=False,
            )
            self.task = self.bar.add_task("", total=progress.total or None, parsed=0, changed=0)
            self.bar.tasks[0].start_time = self.bar.get_time() - (now - self.started)  # the run's time
            self.bar.start()
        self.bar.update(self.task, completed=progress.scanned, parsed=progress.parsed, changed=progress.changed)
        self.bar.refresh()

    def hide(self) -> None:
        if self.bar is not None:
            self.bar.stop()  # transient: erases the bar
            self.bar = None
            self.last = 0.0


@dataclass
class FixOptions:
    diff: bool = False
    check: bool = False
    verbose: bool = False  # also list the findings left alone, with their reasons
    quiet: bool = False  # accepted for compatibility: the default output is already quiet
    color: bool = False  # stdout
    color_err: bool = False  # stderr
    stdin_filename: str | None = None
    jobs: int = 1
    progress: bool = False
    output_format: str = "text"
    show_suppressed: bool = False
    statistics: bool = False
    exit_zero: bool = False
    exit_non_zero_on_fix: bool = False
    force_exclude: bool = False
    excluder: Excluder | None = None
    fix_config: bool = False  # LC007's one-key fix in the DeepSpeed JSON configs it reports
    cache_dir: str | None = None  # the result cache's directory (None: no cache)


def run_fix(paths: list[str], config: Config, options: FixOptions | None = None, **legacy) -> int:
    """Run `fix` and return its exit code. `legacy` keywords (diff=, check=, ...) fill FixOptions."""
    options = options or FixOptions(**legacy)
    dry_run = options.diff or options.check
    mode = "diff" if options.diff else ("check" if options.check else "fix")
    fmt = options.output_format
    machine = fmt in ("json", "sarif")  # stdout holds one document
    printer = Printer(out=sys.stdout.buffer, err=sys.stderr, color=options.color)
    totals = Totals()
    stdin_mode = paths == ["-"]
    # stdout carries code (stdin fix mode) or a diff: findings then go to stderr.
    findings_to_err = (options.diff and fmt == "text") or (stdin_mode and not dry_run)
    line_color = options.color_err if findings_to_err else options.color
    reports: list = []
    annotations = {"error": 0, "warning": 0}
    last_progress: list = []

    bar = ProgressBar(sys.stderr) if options.progress else None

    def on_progress(progress) -> None:
        last_progress[:1] = [progress]
        if bar is not None:
            bar.update(progress)

    configs: dict[str, int] = {}  # LC007: JSON configs reported, for --fix-config

    def report(result: SourceResult) -> None:
        if bar is not None and (result.error is not None or result.findings or result.changed):
            bar.hide()
        if options.fix_config:
            for finding in result.findings:
                if finding.code == "LC007" and finding.path.endswith(".json") and not finding.suppressed:
                    configs.setdefault(finding.path, finding.line)
        totals.add(result.findings, result.changed, result.error is not None, bool(result.skipped))
        diff = None
        if options.diff and result.changed:
            if result.path.endswith(".ipynb"):
                from lora_codemod.notebook import cell_diff

                diff = cell_diff(result)  # the cells' sources, not the notebook's JSON
            else:
                from lora_codemod.report.diff import unified_diff

                diff = unified_diff(result.source, result.output, result.path)
        if machine:
            from lora_codemod.report.formats import FileReport

            reports.append(FileReport.of(result, diff if fmt == "json" else None))
            return
        if fmt == "github":
            from lora_codemod.report.formats import github_error_line, github_line

            if result.error is not None:
                annotations["error"] += 1
                printer.line(github_error_line(result.error), to_err=findings_to_err)
            for finding in result.findings:
                text = github_line(finding, mode)
                if text is not None:
                    annotations["error" if text.startswith("::error") else "warning"] += 1
                    printer.line(text, to_err=findings_to_err)
        else:
            if result.error is not None:
                printer.error(result.error)
            for finding in result.findings:
                if finding.suppressed and not options.show_suppressed:
                    continue
                if finding.status is Status.SKIPPED and not finding.suppressed and not options.verbose:
                    continue  # left alone: counted in the summary, listed with --verbose
                printer.line(colored_finding(finding, dry_run, line_color), to_err=findings_to_err)
        if diff:
            printer.diff(diff)

    items: list = []
    if stdin_mode:
        name = options.stdin_filename or "<stdin>"
        source = sys.stdin.buffer.read()
        result = transform_source(source, name, config)
        report(result)
        if not dry_run:
            sys.stdout.buffer.write(result.output)
            sys.stdout.buffer.flush()
    else:
        try:
            items = list(iter_python_files(paths, options.excluder or DEFAULT_EXCLUDES,
                                           force_exclude=options.force_exclude))
            cache = None
            if options.cache_dir is not None:
                from lora_codemod.cache import ResultCache

                cache = ResultCache(options.cache_dir, config, warn=lambda text: printer.line(text, to_err=True))
            for outcome in run_files(items, config, write=not dry_run, jobs=options.jobs, on_progress=on_progress,
                                     cache=cache):
                report(outcome.result)
        except KeyboardInterrupt:
            if bar is not None:
                bar.hide()
            printer.line(f"interrupted after {totals.files} of {len(items)} files; no file is half-written.",
                         to_err=True)
            return EXIT_INTERRUPTED
        finally:
            if bar is not None:
                bar.hide()

    if configs:
        fix_configs(configs, printer, dry_run=dry_run, diff=options.diff, to_err=findings_to_err or machine)
    summary_to_err = findings_to_err or machine
    if machine:
        from lora_codemod.report.formats import render_json, render_sarif

        document = (render_json if fmt == "json" else render_sarif)(reports, mode)
        sys.stdout.buffer.write(document.encode("utf-8"))
        sys.stdout.buffer.flush()
    if fmt == "github":
        from lora_codemod.report.formats import github_limit_note

        note = github_limit_note(annotations["error"], annotations["warning"])
        if note:
            printer.line(note, to_err=findings_to_err)
    if not stdin_mode and not items:
        printer.line(f"warning: no Python files in {', '.join(paths)}; nothing checked.", to_err=True)
    elif not stdin_mode and totals.files and not totals.errors and last_progress and last_progress[0].parsed + last_progress[0].cached == 0:
        printer.line(f"nothing here saves a model: none of the {totals.files} files calls save_pretrained or "
                     "save_model where a rule could apply.", to_err=summary_to_err)
    if options.statistics and fmt in ("text", "github"):
        for line in totals.statistics("check" if dry_run else "fix"):
            printer.line(line, to_err=summary_to_err)
    printer.line(totals.summary("check" if dry_run else "fix"), to_err=summary_to_err)
    return exit_code(totals, dry_run, options)


def fix_configs(configs: dict[str, int], printer: Printer, *, dry_run: bool, diff: bool, to_err: bool) -> None:
    """LC007 --fix-config: set the gather key in each reported JSON config, written atomically
    (JSON has no comments to lose; the file's indentation and key order are kept)."""
    import os

    from lora_codemod.analysis.deepspeed import GATHER_KEY, with_gather_on_save
    from lora_codemod.engine import ChangedOnDisk, ReadOnly, atomic_replace
    from lora_codemod.report.diff import unified_diff

    for path, line in sorted(configs.items()):
        try:
            with open(path, "rb") as handle:
                before = os.fstat(handle.fileno())
                data = handle.read()
            fixed = with_gather_on_save(data.decode("utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            printer.line(f"{path}: error: cannot read the DeepSpeed config: {exc}", to_err=True)
            continue
        if fixed is None:
            continue
        new = fixed.encode("utf-8")
        if diff:
            printer.diff(unified_diff(data, new, path))
        if not dry_run:
            try:
                atomic_replace(path, new, expected=data, expected_stat=before)
            except (OSError, ChangedOnDisk, ReadOnly) as exc:
                printer.line(f"{path}: error: cannot write the DeepSpeed config: {exc}", to_err=True)
                continue
        status = "would fix" if dry_run else "fixed"
        printer.line(f'{path}:{line}:1: LC007 set "{GATHER_KEY}": true [{status}]', to_err=to_err)


def exit_code(totals: Totals, dry_run: bool, options: FixOptions) -> int:
    """2 on any error; then --exit-zero; 1 for review findings, for changes under --check/--diff,
    and (--exit-non-zero-on-fix) for files `fix` changed."""
    if totals.errors:
        return EXIT_ERROR
    if options.exit_zero:
        return EXIT_OK
    if totals.review or (dry_run and totals.changed):
        return EXIT_FINDINGS
    if options.exit_non_zero_on_fix and totals.changed:
        return EXIT_FINDINGS
    return EXIT_OK
