"""What every rule is: a code, its documentation, its own examples, and a `check`."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from functools import cached_property

import libcst as cst

from lora_codemod.analysis.index import ModuleIndex
from lora_codemod.analysis.saves import Save, SaveFacts
from lora_codemod.config import Config
from lora_codemod.findings import Status
from lora_codemod.plan import Plan


@dataclass(frozen=True)
class Example:
    """`after` None and `reports` None: the rule must leave `before` alone, with no finding of
    its own that is not "left alone" (a VALID example). `reports`: the rule reports `before`
    with that status and does not rewrite it (an INVALID example of a report-only case)."""

    before: str
    after: str | None = None
    reports: str | None = None  # "needs review"
    title: str = ""
    args: dict = field(default_factory=dict)  # Config overrides, e.g. {"flag_pattern": "..."}


@dataclass
class PendingFinding:
    """A finding whose position is resolved later, only when the file has any."""

    code: str
    node: cst.CSTNode
    message: str
    status: Status
    reason: str = ""
    where: tuple[str, int, int] | None = None  # (path, line, col) of a finding in another file
    edits: frozenset = frozenset()  # the plan edits added since the previous report (suppression)
    # An unsafe fix (it changes what runs on an approximation): the review reason it gets, and
    # its edits dropped, unless unsafe fixes are enabled.
    unsafe: str = ""


@dataclass
class RuleContext:
    index: ModuleIndex
    config: Config
    path: str = "<stdin>"  # the source's path; rules that read files beside it (LC007) start here
    plan: Plan = field(default_factory=Plan)
    findings: list[PendingFinding] = field(default_factory=list)

    # id(anchor) -> (name bound to the trainer's model there, trainer): shared by LC001 and LC004,
    # so a block whose saves both rules fix gets one `model_to_save` assignment.
    fix_names: dict[int, tuple[str, str]] = field(default_factory=dict)
    # The plan edits already attributed to a finding: a rule adds a finding's edits, then reports it.
    attributed: set = field(default_factory=set)

    @cached_property
    def facts(self) -> SaveFacts:
        return SaveFacts(self.index)

    @property
    def saves(self) -> list[Save]:
        return self.facts.saves

    def report(self, code: str, node: cst.CSTNode, message: str, status: Status, reason: str = "",
               where: tuple[str, int, int] | None = None, unsafe: str = "") -> None:
        """`unsafe`: the fix is unsafe; this is the review reason when unsafe fixes are off."""
        from lora_codemod.suppression import plan_edits

        edits = plan_edits(self.plan) - self.attributed
        self.attributed |= edits
        self.findings.append(PendingFinding(code, node, message, status, reason, where, frozenset(edits), unsafe))


class Rule(abc.ABC):
    code: str
    name: str
    summary: str
    # Markdown with the sections: What it does / Why is this bad? / Example / Fix / When it does not apply.
    doc: str
    examples: tuple[Example, ...] = ()

    @abc.abstractmethod
    def check(self, ctx: RuleContext) -> None:
        """Report findings on `ctx` and add the edits that fix them to `ctx.plan`."""
