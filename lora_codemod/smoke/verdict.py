"""A run's facts and its verdict: the checks on saves and ranks, pass / fail / could not run."""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field

from lora_codemod.smoke.child import verify as verify_mod
from lora_codemod.smoke.device import LaunchPlan
from lora_codemod.smoke.child.records import SaveCall, _same_path_key

OUTPUT_DIR = "{output_dir}"


@dataclass
class FixSummary:
    applied: bool  # False under --no-fix
    changed: bool = False
    findings: list = field(default_factory=list)  # lora_codemod.findings.Finding

    def as_dict(self) -> dict:
        return {
            "applied": self.applied,
            "changed": self.changed,
            "findings": [f.as_dict() for f in self.findings],
        }



@dataclass
class SmokeRun:
    label: str  # "patched" or "unpatched"
    script: str
    plan: LaunchPlan
    command: list[str]
    output_dir: str
    adapter_dir: str
    fix: FixSummary
    exit_code: int | None = None
    timed_out: bool = False
    wall_seconds: float = 0.0
    last_phase: str = ""
    output_tail: list[str] = field(default_factory=list)
    log_path: str = ""
    saves: list[SaveCall] = field(default_factory=list)
    exception: dict | None = None
    backend_overrides: list[dict] = field(default_factory=list)
    process_groups: list[dict] = field(default_factory=list)  # one per rank that joined a group
    run_checks: list[verify_mod.Check] = field(default_factory=list)
    verify: verify_mod.VerifyResult | None = None
    adapter_source: str = "--adapter-dir"  # or "last LoRA save", "none recorded"
    standins: list[dict] = field(default_factory=list)  # {what, detail, ranks}
    training: list[dict] = field(default_factory=list)  # per rank and train(): steps, losses, LoRA changes
    work_dir: str = ""
    # `save_pretrained` looked up on a plain nn.Module, where it does not exist: {rank, class, error, where}
    missing_saves: list[dict] = field(default_factory=list)
    # Seconds outside the script's own work: fix, child (its whole wall time), tiny model, verify;
    # CPU seconds of this process while it watched the child, and of the child's process tree.
    timings: dict = field(default_factory=dict)
    # Under torchrun with no Python exception recorded: the first rank to fail, from torchrun's
    # summary ({rank, exit, lines (its error file's traceback or its own log's end), from}).
    rank_failure: dict | None = None
    output_bytes: int = 0  # what the script printed
    output_cut_bytes: int = 0  # of it, what the log left out (it keeps the head and the tail)

    @property
    def crashed(self) -> bool:
        return self.timed_out or self.exit_code != 0

    @property
    def status_code(self) -> int:
        if self.crashed:
            return 2
        failed = any(c.status == verify_mod.FAIL for c in self.run_checks)
        if failed or self.verify is None or not self.verify.passed:
            return 1
        return 0

    def all_checks(self) -> list[verify_mod.Check]:
        return [*self.run_checks, *(self.verify.checks if self.verify else [])]

    def adapter_writers(self) -> list[int]:
        target = _same_path_key(self.adapter_dir)
        return sorted({s.rank for s in self.saves if s.writes and s.directory and _same_path_key(s.directory) == target})

    def verdict(self) -> str:
        if self.timed_out:
            phase = f" while {self.last_phase}" if self.last_phase else ""
            return f"TIMEOUT: the script did not finish in time{phase}; every process was stopped"
        if self.exit_code != 0:
            text = f"CRASHED: the script exited with code {self.exit_code}"
            if self.exception:
                rank = f"rank {self.exception.get('rank')}: " if self.plan.distributed else ""
                text += f": {rank}{self.exception['type']}: {self.exception['message']}"
                began = self.exception.get("began_as")
                if began:
                    text += (f" (it began as {began['type']}: {began['message']}, at "
                             f"{os.path.basename(str(began.get('where') or '?'))}; each exception after it was raised "
                             "while handling the one before)")
                stopped = next((i for i in self.standins if i["what"] == "download"
                                and i["detail"].endswith("; the script stopped there")), None)
                if stopped:
                    text += (f" (at {stopped['detail'].split(' -> ', 1)[0]}: files only this project reads, which no "
                             "stand-in can replace; give the script a local copy)")
            elif self.rank_failure:
                exit_text = f" with exit code {self.rank_failure['exit']}" if self.rank_failure.get("exit") else ""
                text += f": rank {self.rank_failure['rank']} failed first{exit_text}"
            return text
        failure = next((c for c in self.all_checks() if c.status == verify_mod.FAIL), None)
        if failure is not None:
            return f"FAIL: {failure.name}: {failure.detail}"
        writers = self.adapter_writers()
        who = ""
        if self.plan.distributed and len(writers) == 1:
            who = f", written by rank {writers[0]} alone"
        warned = any(c.status == verify_mod.WARN for c in self.all_checks())
        return f"PASS: a valid LoRA adapter in {self.shown(self.adapter_dir)}{who}" + (" (with warnings)" if warned else "")

    def hints(self) -> list[str]:
        """What may have made a crash that the script itself did not cause."""
        if not self.crashed:
            return []
        hints = []
        for item in self.standins:
            detail = str(item.get("detail"))
            if item.get("what") == "config" and "'s defaults, shrunk" in detail:
                name, rest = detail.split(" -> ", 1)
                owner = rest.split(": ", 1)[-1].split("'s defaults", 1)[0]
                hints.append(f"{name} got a stand-in made from {owner}'s defaults: where your checkpoint's config differs "
                             "from them (a shape mismatch may come from that), pass --like a directory with its config.json")
        return hints

    def shown(self, path: str | None) -> str:
        """A path as the user wrote it: under the temporary output dir, as {output_dir}/..."""
        if not path:
            return "?"
        if path == self.output_dir or path.startswith(self.output_dir + os.sep):
            return OUTPUT_DIR + path[len(self.output_dir) :]
        if self.work_dir and path.startswith(self.work_dir + os.sep):
            return "./" + path[len(self.work_dir) + 1 :]
        return path

    def as_dict(self) -> dict:
        return {
            "mode": self.label,
            "script": self.script,
            "device": self.plan.device,
            "processes": self.plan.nproc,
            "backend": self.plan.backend,
            "command": self.command,
            "wall_seconds": round(self.wall_seconds, 3),
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "last_phase": self.last_phase,
            "exception": self.exception,
            "rank_failure": self.rank_failure,
            "backend_overrides": self.backend_overrides,
            "process_groups": self.process_groups,
            "fix": self.fix.as_dict(),
            "output_dir": self.output_dir,
            "adapter_dir": self.adapter_dir,
            "adapter_dir_from": self.adapter_source,
            "work_dir": self.work_dir,
            "standins": self.standins,
            "training": self.training,
            "saves": [s.as_dict() for s in self.saves],
            "missing_saves": self.missing_saves,
            "timings": self.timings,
            "adapter_writers": self.adapter_writers(),
            "checks": [c.as_dict() for c in self.all_checks()],
            "verify": self.verify.as_dict() if self.verify else None,
            "verdict": self.verdict(),
            "hints": self.hints(),
            "status_code": self.status_code,
            "output_tail": self.output_tail[-40:],
            "output_bytes": self.output_bytes,
            "output_cut_bytes": self.output_cut_bytes,
            "log": self.log_path,
        }



def training_check(run: SmokeRun) -> verify_mod.Check | None:
    """"Nothing trained" is not a pass: every logged loss exactly 0, or no LoRA weight moved."""
    name = "training"
    records = run.training
    if not records:
        trained = next((c for c in (run.verify.checks if run.verify else []) if c.name == "lora_B trained"), None)
        if trained is not None and trained.status == verify_mod.WARN and trained.figure.split(" of ")[0] == trained.figure.split(" of ")[-1].split()[0]:
            return verify_mod.Check(name, verify_mod.FAIL, "nothing trained: every lora_B in the adapter is still zero "
                                    "(no Trainer ran, so no initial values to compare with)", trained.figure)
        return None
    losses = [v for r in records for v in (r.get("losses") or []) if v is not None]
    steps = max(int(r.get("steps") or 0) for r in records)
    bad = [v for v in losses if isinstance(v, str) or v != v]
    if bad:
        return verify_mod.Check(name, verify_mod.FAIL, f"the loss was {bad[0]}: training diverged or every label was masked",
                                f"{steps} steps")
    if losses and all(v == 0 for v in losses):
        return verify_mod.Check(name, verify_mod.FAIL, "nothing trained: every logged loss was exactly 0 "
                                "(every label masked?)", f"{len(losses)} losses")
    tensors = max(int(r.get("lora_tensors") or 0) for r in records)
    changed = max(int(r.get("lora_changed") or 0) for r in records)
    if tensors and not changed:
        return verify_mod.Check(name, verify_mod.FAIL, f"nothing trained: no LoRA weight changed from its initial value "
                                f"in {steps} step(s)", f"0 of {tensors} changed")
    if steps == 0:
        return verify_mod.Check(name, verify_mod.FAIL, "nothing trained: the Trainer ran 0 steps", "0 steps")
    last = f", last loss {losses[-1]:.4g}" if losses else ""
    figure = f"{changed} of {tensors} changed" if tensors else f"{steps} steps"
    return verify_mod.Check(name, verify_mod.PASS, f"{steps} step(s){last}; the LoRA weights moved", figure)


def _short_where(where: str | None) -> str:
    if not where:
        return "?"
    path, _, line = where.rpartition(":")
    return f"{os.path.basename(path)}:{line}" if path else where


def missing_save_check(run: SmokeRun) -> verify_mod.Check | None:
    """A save the script attempted on a plain nn.Module: AttributeError, caught by the script (it ran on)."""
    if not run.missing_saves:
        return None
    by_place: dict[tuple, list[int]] = collections.defaultdict(list)
    for miss in run.missing_saves:
        by_place[(miss.get("class") or "?", miss.get("where"), miss.get("error"))].append(int(miss.get("rank") or 0))
    (cls, where, error), ranks = next(iter(by_place.items()))
    name = cls.rsplit(".", 1)[-1]
    who = f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {', '.join(map(str, sorted(ranks)))}"
    more = f" ({len(by_place) - 1} more such save(s))" if len(by_place) > 1 else ""
    adapter_ok = run.verify is not None and run.verify.passed
    outcome = "an adapter was found anyway" if adapter_ok else "no adapter was saved there"
    detail = (f"{who}: {name}.save_pretrained ({_short_where(where)}) raised {error}; the script caught it and went "
              f"on, so {outcome}{more}. {name} is a plain nn.Module: save the PEFT model inside it")
    figure = f"{len(run.missing_saves)} failed save(s)"
    return verify_mod.Check("adapter save ran", verify_mod.WARN if adapter_ok else verify_mod.FAIL, detail, figure)


def run_checks(run: SmokeRun) -> list[verify_mod.Check]:
    checks = []
    trained = training_check(run)
    if trained is not None:
        checks.append(trained)
    missing = missing_save_check(run)
    if missing is not None:
        checks.append(missing)
    top_level_writes = [s for s in run.saves if s.writes and s.directory and s.parent is None]
    by_dir: dict[str, set[int]] = collections.defaultdict(set)
    for save in top_level_writes:
        by_dir[_same_path_key(save.directory)].add(save.rank)
    shared = {d: ranks for d, ranks in by_dir.items() if len(ranks) > 1}

    writers = run.adapter_writers()
    if run.plan.distributed:
        joined = sorted({int(g["rank"]) for g in run.process_groups if g.get("world_size") == run.plan.nproc})
        if len(joined) == run.plan.nproc:
            backends = ", ".join(sorted({str(g["backend"]) for g in run.process_groups}))
            checks.append(
                verify_mod.Check("ranks joined one process group", verify_mod.PASS, f"backend {backends}", f"{len(joined)} ranks")
            )
        else:
            checks.append(
                verify_mod.Check(
                    "ranks joined one process group",
                    verify_mod.WARN,
                    "not every rank joined a process group: each such rank trained alone and "
                    "is_world_process_zero() was true on all of them",
                    f"{len(joined)} of {run.plan.nproc} ranks",
                )
            )
        if len(writers) == 1:
            checks.append(verify_mod.Check("one rank writes the adapter", verify_mod.PASS, f"rank {writers[0]} alone", "1 writer"))
        elif not writers:
            checks.append(
                verify_mod.Check(
                    "one rank writes the adapter",
                    verify_mod.FAIL,
                    "no recorded save wrote the adapter directory",
                    "0 writers",
                )
            )
        else:
            ranks = ", ".join(map(str, writers))
            checks.append(
                verify_mod.Check(
                    "one rank writes the adapter",
                    verify_mod.FAIL,
                    f"ranks {ranks} all wrote the adapter directory at the same time (guard the save with "
                    "trainer.is_world_process_zero())",
                    f"{len(writers)} writers",
                )
            )
    elif not writers:
        checks.append(
            verify_mod.Check(
                "a recorded save wrote the adapter",
                verify_mod.WARN,
                "no save_pretrained/save_model call wrote the adapter directory",
                "0 saves",
            )
        )
    other_shared = {d: r for d, r in shared.items() if d != _same_path_key(run.adapter_dir)}
    if other_shared:
        directory, ranks = sorted(other_shared.items())[0]
        checks.append(
            verify_mod.Check(
                "one writer per directory",
                verify_mod.FAIL,
                f"ranks {', '.join(map(str, sorted(ranks)))} wrote the same directory {directory}",
                f"{len(other_shared)} shared dir(s)",
            )
        )
    return checks
