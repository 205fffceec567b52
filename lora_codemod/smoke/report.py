"""Rich rendering of verify results and smoke runs, and the live status line while a script runs."""

from __future__ import annotations

import os

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lora_codemod.smoke.launch import StatusSink
from lora_codemod.smoke.child.records import SaveCall
from lora_codemod.smoke.runner import SmokeSession
from lora_codemod.smoke.verdict import SmokeRun
from lora_codemod.smoke.child.verify import FAIL, PASS, WARN, Check, VerifyResult

STATUS_STYLE = {PASS: "green", WARN: "yellow", FAIL: "bold red"}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def checks_table(checks: list[Check], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("check")
    table.add_column("result")
    table.add_column("figure", style="cyan")
    table.add_column("detail", overflow="fold")
    for check in checks:
        table.add_row(check.name, status_text(check.status), check.figure, check.detail)
    return table


def render_verify(console: Console, result: VerifyResult) -> None:
    console.print(checks_table(result.checks, title=f"verify {result.directory}"))
    verdict = {PASS: "PASS", WARN: "PASS (with warnings)", FAIL: "FAIL"}[result.status]
    failure = result.first_failure()
    tail = f": {failure.name}: {failure.detail}" if failure else ""
    console.print(Text(f"{verdict}{tail}", style=STATUS_STYLE[result.status]))


def _shown_dir(path: str | None, run: SmokeRun) -> str:
    return run.shown(path)


def _saved_object(save: SaveCall) -> str:
    name = save.short_class
    if save.api == "save_model":
        return f"{name} (the Trainer's model)"
    if save.model_kind == "peft":
        return f"{name} (adapter)"
    if save.model_kind.startswith("transformers (add_adapter"):
        return f"{name} (adapter via add_adapter)"
    if save.lora_injected:
        return f"{name} (LoRA injected: saves a full model)"
    return f"{name} (full model)"


def _writes(save: SaveCall) -> str:
    if save.writes:
        return "yes"
    return "no (not the main process)" if save.api == "save_model" else "no (is_main_process=False)"


def _miss_fate(run: SmokeRun, miss: dict) -> str:
    """Whether the AttributeError of a missing save_pretrained stopped the script or was caught."""
    exception = run.exception or {}
    if run.crashed and exception.get("message") and str(exception["message"]) in str(miss.get("error")):
        return "not caught: the script stopped"
    return "caught by the script"


def saves_table(run: SmokeRun) -> Table:
    table = Table(title="saves by rank", title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("call")
    table.add_column("object saved")
    table.add_column("directory", overflow="fold")
    table.add_column("writes")
    writers_by_dir: dict[str, set[int]] = {}
    for save in run.saves:
        if save.writes and save.parent is None and save.directory:
            writers_by_dir.setdefault(save.directory, set()).add(save.rank)
    for save in run.saves:
        call = "Trainer.save_model" if save.api == "save_model" else "save_pretrained"
        if save.checkpoint:
            call += " (checkpoint)"
        if save.via:
            call = f"  ↳ {call} (inside {save.via})"
        writes = Text(_writes(save))
        if save.parent is None and len(writers_by_dir.get(save.directory or "", ())) > 1:
            writes = Text(f"{_writes(save)}, shared with another rank", style="bold red")
        if save.error:
            writes.append(f" (raised {save.error})", style="red")
        table.add_row(str(save.rank), call, _saved_object(save), _shown_dir(save.directory, run), writes)
    for miss in run.missing_saves:
        name = str(miss.get("class") or "?").rsplit(".", 1)[-1]
        table.add_row(str(miss.get("rank")), "save_pretrained (not there)", f"{name} (plain nn.Module)", "-",
                      Text(f"no: {str(miss.get('error')).split(':')[0]}, {_miss_fate(run, miss)}", style="bold red"))
    return table


def _fix_lines(run: SmokeRun) -> list[str]:
    if not run.fix.applied:
        return ["fix: not applied (unpatched run)"]
    if not run.fix.changed:
        lines = ["fix: applied in memory; it changed nothing in this script"]
    else:
        lines = [f"fix: applied in memory ({len(run.fix.findings)} finding(s)); the script file is untouched"]
    return lines + [f"  {f.format()}" for f in run.fix.findings]


def verdict_text(run: SmokeRun) -> Text:
    style = {0: "bold green", 1: "bold red", 2: "bold red"}[run.status_code]
    return Text(run.verdict(), style=style)


def render_run(console: Console, run: SmokeRun) -> None:
    console.rule(f"{run.label} run: {os.path.basename(run.script)}")
    for line in _fix_lines(run):
        console.print(Text(line))
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("device", run.plan.describe())
    facts.add_row("wall time", f"{run.wall_seconds:.1f} s")
    facts.add_row("exit code", "timeout" if run.timed_out else str(run.exit_code))
    facts.add_row("adapter dir", f"{_shown_dir(run.adapter_dir, run)} ({_adapter_source(run)})")
    for override in run.backend_overrides:
        why = "CPU" if run.plan.device == "cpu" else "ranks share GPUs"
        facts.add_row("backend", f"rank {override['rank']} asked for {override['requested']}, ran {override['used']} ({why})")
    console.print(facts)
    console.print(standins_table(run))
    if run.saves or run.missing_saves:
        console.print(saves_table(run))
    else:
        console.print(Text("saves by rank: none recorded", style="yellow"))
    if run.all_checks():
        console.print(checks_table(run.all_checks(), title=f"checks of {_shown_dir(run.adapter_dir, run)}"))
    if run.crashed:
        for line in crash_lines(run):
            console.print(line)
        for hint in run.hints():
            console.print(Text(f"hint: {hint}", style="yellow"))
    console.print(verdict_text(run))


def crash_lines(run: SmokeRun, whose: str = "the script's") -> list[Text]:
    """What a crash shows: under torchrun, the first failing rank's own traceback (or its own log),
    not torchrun's summary; in one process, the last lines of the output (the traceback among them)."""
    exception = run.exception or {}
    if run.plan.distributed and exception.get("traceback"):
        title = f"traceback of rank {exception.get('rank')} (the first rank to fail):"
        lines = str(exception["traceback"]).rstrip("\n").splitlines()[-30:]
    elif run.plan.distributed and run.rank_failure and run.rank_failure.get("lines"):
        title = f"rank {run.rank_failure['rank']} failed first; the end of {run.rank_failure['from']}:"
        lines = run.rank_failure["lines"]
    elif run.output_tail:
        title, lines = f"last lines of {whose} output:", run.output_tail[-15:]
    else:
        return []
    return [Text(title, style="bold"), *(Text("  " + line) for line in lines)]


def _adapter_source(run: SmokeRun) -> str:
    return {
        "--adapter-dir": "--adapter-dir",
        "last LoRA save": "where the last save of a LoRA model went",
        "none recorded": "no save of a LoRA model was recorded",
    }.get(run.adapter_source, run.adapter_source)


STANDIN_LABELS = {
    "model": "model",
    "tokenizer": "tokenizer",
    "processor": "processor",
    "config": "config",
    "dataset": "dataset",
    "cpu": "CPU shim",
    "gpu": "GPU shim",
    "missing": "not installed",
    "file": "missing file",
    "ranks": "ranks",
    "backend": "backend",
    "steps": "step cap",
    "tracker": "tracker",
    "hub": "hub upload",
    "download": "hub download",
}


def standins_table(run: SmokeRun) -> Table | Text:
    if not run.standins:
        return Text("stand-ins: none (the script ran on what it asked for)")
    table = Table(title="stand-ins (what this run substituted)", title_justify="left")
    table.add_column("kind")
    table.add_column("substitution", overflow="fold")
    table.add_column("ranks")
    for item in run.standins:
        table.add_row(STANDIN_LABELS.get(item["what"], item["what"]), Text(item["detail"]), ", ".join(map(str, item["ranks"])))
    return table


def _standins_summary(run: SmokeRun) -> str:
    return "\n".join(f"{STANDIN_LABELS.get(i['what'], i['what'])}: {i['detail']}" for i in run.standins) or "none"


def _saves_summary(run: SmokeRun) -> str:
    rows = []
    for save in run.saves:
        if save.parent is not None:
            continue
        rows.append(f"rank {save.rank}: {save.short_class} → {_shown_dir(save.directory, run)} ({'writes' if save.writes else 'no write'})")
    for miss in run.missing_saves:
        name = str(miss.get("class") or "?").rsplit(".", 1)[-1]
        rows.append(f"rank {miss.get('rank')}: {name}.save_pretrained → AttributeError ({_miss_fate(run, miss)})")
    return "\n".join(rows) or "none"


def render_compare(console: Console, session: SmokeSession) -> None:
    unpatched, patched = session.runs
    for line in _fix_lines(patched):
        console.print(Text(line))
    table = Table(title=f"compare: {os.path.basename(patched.script)} ({patched.plan.describe()})", title_justify="left", show_lines=True)
    table.add_column("")
    table.add_column("unpatched", overflow="fold")
    table.add_column("patched", overflow="fold")

    def exit_cell(run: SmokeRun) -> str:
        return "timeout" if run.timed_out else str(run.exit_code)

    table.add_row("exit code", exit_cell(unpatched), exit_cell(patched))
    table.add_row("wall time", f"{unpatched.wall_seconds:.1f} s", f"{patched.wall_seconds:.1f} s")
    table.add_row("stand-ins", _standins_summary(unpatched), _standins_summary(patched))
    table.add_row("adapter dir", f"{_shown_dir(unpatched.adapter_dir, unpatched)}\n({_adapter_source(unpatched)})",
                  f"{_shown_dir(patched.adapter_dir, patched)}\n({_adapter_source(patched)})")
    table.add_row("saves", _saves_summary(unpatched), _saves_summary(patched))
    names: list[str] = []
    for run in session.runs:
        for check in run.all_checks():
            if check.name not in names:
                names.append(check.name)
    for name in names:
        cells = []
        for run in session.runs:
            check = next((c for c in run.all_checks() if c.name == name), None)
            if check is None:
                cells.append(Text("-", style="dim"))
            else:
                cell = status_text(check.status)
                if check.figure:
                    cell.append(f"  {check.figure}", style="cyan")
                if check.status != PASS:
                    cell.append(f"\n{check.detail}")
                cells.append(cell)
        table.add_row(name, *cells)
    table.add_row("verdict", verdict_text(unpatched), verdict_text(patched))
    console.print(table)
    for run in session.runs:
        if run.crashed:
            for line in crash_lines(run, f"the {run.label} run's"):
                console.print(line)
            for hint in run.hints():
                console.print(Text(f"hint ({run.label} run): {hint}", style="yellow"))


def render_session(console: Console, session: SmokeSession) -> None:
    if len(session.runs) == 2:
        render_compare(console, session)
    else:
        render_run(console, session.runs[0])
    if session.kept:
        console.print(Text(f"kept: {session.run_dir}", style="dim"))


class TerminalStatus(StatusSink):
    """One live line on stderr: elapsed time, the phase, the script's last output line."""

    def __init__(self, console: Console):
        self.console = console
        self.label = ""
        self._status = None

    def start(self, label: str) -> None:
        self.label = label
        self._status = self.console.status(escape(label))
        self._status.start()

    def update(self, elapsed: float, phase: str, last_line: str) -> None:
        if self._status is None:
            return
        width = max(self.console.width - len(self.label) - len(phase) - 20, 10)
        last = last_line if len(last_line) <= width else last_line[: width - 1] + "…"
        self._status.update(
            f"[bold]{escape(self.label)}[/] {elapsed:5.1f}s  [cyan]{escape(phase)}[/]  [dim]{escape(last)}[/]"
        )

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


class StreamingStatus(StatusSink):
    """-v: the script's own output streams to stderr; each run starts with a line naming it."""

    def __init__(self, console: Console):
        self.console = console

    def start(self, label: str) -> None:
        self.console.print(Text(f"── {label}: the script's output follows ──", style="bold"))


class QuietStatus(StatusSink):
    """Piped output: no live line, no streaming (the report still shows the output tail on failure)."""
