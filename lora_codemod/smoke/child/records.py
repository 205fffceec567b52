"""What the child recorded: event files, saves, stand-ins, training figures, the live phase."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SaveCall:
    """One recorded save: save_pretrained on a model, or Trainer.save_model."""

    id: str
    rank: int
    api: str
    cls: str
    model_kind: str
    directory: str | None
    writes: bool
    parent: str | None = None
    via: str | None = None
    checkpoint: bool = False
    lora_injected: bool = False
    finished: bool = False
    error: str | None = None
    order: float = 0.0  # when it started (event time), to find the last one

    @property
    def short_class(self) -> str:
        return self.cls.rsplit(".", 1)[-1]

    def as_dict(self) -> dict:
        return {
            "rank": self.rank,
            "api": self.api,
            "class": self.cls,
            "model_kind": self.model_kind,
            "dir": self.directory,
            "writes": self.writes,
            "via": self.via,
            "checkpoint": self.checkpoint,
            "lora_injected": self.lora_injected,
            "finished": self.finished,
            "error": self.error,
        }


def _same_path_key(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))



def read_events(events_dir: str) -> list[dict]:
    events = []
    directory = Path(events_dir)
    if not directory.is_dir():
        return events
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written right now
    events.sort(key=lambda e: e.get("t", 0))
    return events


def latest_phase(events: list[dict]) -> str:
    phases = [e for e in events if e.get("kind") == "phase"]
    if not phases:
        return ""
    # Rank 0 speaks for the run; other ranks only when rank 0 has said nothing yet.
    rank0 = [e for e in phases if e.get("rank") == 0]
    event = (rank0 or phases)[-1]
    return str(event.get("phase", ""))


def collect_saves(events: list[dict]) -> list[SaveCall]:
    saves: dict[str, SaveCall] = {}
    for event in events:
        if event.get("kind") == "save":
            saves[event["id"]] = SaveCall(
                id=event["id"],
                rank=int(event.get("rank", 0)),
                api=event.get("api", "?"),
                cls=event.get("class", "?"),
                model_kind=event.get("model_kind", "?"),
                directory=event.get("dir"),
                writes=bool(event.get("writes")),
                parent=event.get("parent"),
                via=event.get("via"),
                checkpoint=bool(event.get("checkpoint")),
                lora_injected=bool(event.get("lora_injected")),
                order=float(event.get("t", 0)),
            )
        elif event.get("kind") == "save_end" and event.get("id") in saves:
            call = saves[event["id"]]
            call.finished = bool(event.get("ok"))
            call.error = event.get("error")
    return sorted(saves.values(), key=lambda s: (s.rank, s.id.rsplit("-", 1)[0], int(s.id.rsplit("-", 1)[1])))




def is_lora_save(save: SaveCall) -> bool:
    """A top-level save of a model carrying LoRA (adapter or not): where the script meant its adapter to go."""
    return (
        save.parent is None
        and not save.checkpoint
        and bool(save.directory)
        and (save.model_kind == "peft" or save.model_kind.startswith("transformers (add_adapter") or save.lora_injected)
    )


def last_lora_save_dir(saves: list[SaveCall]) -> str | None:
    """The directory of the run's last top-level save of a LoRA model (a writing one if any wrote)."""
    candidates = [s for s in saves if is_lora_save(s)]
    writing = [s for s in candidates if s.writes] or candidates
    if not writing:
        return None
    last = max(writing, key=lambda s: s.order)
    return last.directory


def collect_missing_saves(events: list[dict]) -> list[dict]:
    """`save_pretrained` looked up on a plain nn.Module (no such method): rank, class, error, where."""
    return [
        {k: e.get(k) for k in ("rank", "class", "attribute", "error", "where")}
        for e in events
        if e.get("kind") == "missing_save"
    ]


def collect_standins(events: list[dict]) -> list[dict]:
    """Every substitution, once, with the ranks that made it (`what` groups them in the report)."""
    found: dict[tuple[str, str], set[int]] = {}
    for event in events:
        if event.get("kind") == "standin":
            found.setdefault((str(event.get("what")), str(event.get("detail"))), set()).add(int(event.get("rank", 0)))
    return [{"what": what, "detail": detail, "ranks": sorted(ranks)} for (what, detail), ranks in found.items()]


def collect_training(events: list[dict]) -> list[dict]:
    """One record per rank and Trainer.train(): steps, losses, LoRA tensors changed from their initial values."""
    return [
        {k: e.get(k) for k in ("rank", "steps", "losses", "lora_tensors", "lora_changed")}
        for e in events
        if e.get("kind") == "trained"
    ]


def collect_timings(events: list[dict]) -> dict:
    """Seconds the child spent outside the script (rank 0's, else the slowest rank's): the tiny
    model, verifying the adapter."""
    timings: dict[str, float] = {}
    for event in events:
        if event.get("kind") == "timing" and isinstance(event.get("seconds"), (int, float)):
            key = str(event.get("what"))
            if event.get("rank") == 0 or key not in timings:
                timings[key] = float(event["seconds"])
    return timings


def child_verify(events: list[dict], adapter_dir: str, base_model: str | None):
    """The child's verification of `adapter_dir` (with the same base model), or None."""
    from lora_codemod.smoke.child.verify import VerifyResult

    for event in reversed(events):
        if event.get("kind") != "verify" or event.get("base_model") != base_model:
            continue
        if _same_path_key(str(event.get("dir") or "")) == _same_path_key(adapter_dir):
            return VerifyResult.from_dict(event["result"])
    return None
