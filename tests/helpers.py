"""Checks shared by the example, fixture and CLI tests: the spec's invariants."""

from __future__ import annotations

import difflib
from collections import Counter
import re

import libcst as cst

from lora_codemod.analysis.invariants import violations
from lora_codemod.config import Config
from lora_codemod.engine import transform_source
from lora_codemod.findings import SourceResult, Status

# A torchrun script that saves the base model under the PEFT model's name, with no guard: the
# usual "something to fix" of the CLI tests (LC001 and LC002).
DDP_SCRIPT = b"""\
import os

local_rank = int(os.environ.get("LOCAL_RANK", -1))
peft_model = get_peft_model(model, lora_config)
trainer = Trainer(model=peft_model, args=training_args)
trainer.train()
if args.use_lora:
    model.save_pretrained(os.path.join(args.output_dir, "lora_adapters"))
"""

# Lines the rules add from nothing: the unwrap assignment and the rank-zero guard.
INSERTED = re.compile(
    r"^[ \t]*\w+ = [\w.]+\.model\.module if hasattr\([\w.]+\.model, (['\"])module\1\) else [\w.]+\.model\r?\n?$"
    r"|^[ \t]*if (?:[\w.]+\.is_world_process_zero\(\)|state\.is_world_process_zero|args\.should_save):\r?\n?$"
)
NEW_NAME = re.compile(r"\b(?:lora_)?model_to_save(?:_\d+)?\b")
# `if flag: stmt` on one line: a rule that adds a statement first turns it into a header + block.
ONE_LINE_SUITE = re.compile(r"^([ \t]*(?:if|elif|else)\b[^:\n]*:)[ \t]+(\S.*?)(\r?\n)?$", re.S)


def run(source: bytes, config: Config | None = None, path: str = "case.py") -> SourceResult:
    result = transform_source(source, path, config)
    assert result.error is None, result.error.format()
    return result


def assert_invariants(source: bytes, config: Config | None = None, path: str = "case.py") -> SourceResult:
    """Invariants 1, 2, 3 and 6 of the spec, for one source. Returns the first result.
    `path`: the name the engine sees (a test module's name changes what LC002 does)."""
    result = run(source, config, path)
    # 1. the output parses and compiles
    compile(result.output, path, "exec", dont_inherit=True)
    # 2. a second run changes nothing
    again = run(result.output, config, path)
    assert again.output == result.output, "second run changed the file:\n" + _diff(result.output, again.output)
    # CI-green after fix (contract v3): the output has nothing left to fix, and needs no review
    # that the source did not already need (a rewrite never leaves its own result for review)
    assert not [f for f in again.findings if f.status is Status.FIXED and not f.suppressed], \
        "fix --check on fix's own output still finds something to fix:\n" + "\n".join(f.format() for f in again.findings)
    before_reviews = Counter((f.code, f.message, f.reason) for f in result.findings if f.status is Status.REVIEW)
    after_reviews = Counter((f.code, f.message, f.reason) for f in again.findings if f.status is Status.REVIEW)
    assert not after_reviews - before_reviews, "fix's own output needs review:\n" + "\n".join(
        f.format() for f in again.findings if f.status is Status.REVIEW)
    # 3. every changed line is explained by a rule's edit; all other bytes are identical
    assert_only_rule_edits(source, result.output)
    # 7 and 8. no collective moved under a guard, no guard in a guard, rank 0 still runs
    # everything it ran, nothing escaping a new guard (checked on the trees, rank by rank)
    if result.output != source:
        problems = violations(cst.parse_module(source), cst.parse_module(result.output), (config or Config()).flag_regex)
        assert not problems, "invariants 7/8 broken:\n" + "\n".join(problems) + "\n" + _diff(source, result.output)
    # 6. every finding is complete
    for finding in result.findings:
        assert re.fullmatch(r"LC00\d", finding.code)
        assert finding.line >= 1 and finding.col >= 1 and finding.message
        assert finding.status.value == "fixed" or finding.reason
    return result


def assert_only_rule_edits(before: bytes, after: bytes) -> None:
    """Each removed line comes back as an added line that differs only by indentation and by the
    leading model name turned into the new name; other added lines are the inserted ones."""
    old = before.decode("latin-1").splitlines(keepends=True)
    new = after.decode("latin-1").splitlines(keepends=True)
    removed, added = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "delete" and _is_state_dict_patch("".join(old[i1:i2])):
            continue  # LC005 removes the patch and the binding it reads
        if tag in ("replace", "delete"):
            removed += old[i1:i2]
        if tag in ("replace", "insert"):
            added += new[j1:j2]
    candidates = [a for a in added if not INSERTED.match(a)]
    saves: set[str] = set()
    split: list[str] = []
    for line in removed:
        match = ONE_LINE_SUITE.match(line)
        if match and not any(c.lstrip(" \t") == line.lstrip(" \t") or _saved_from(c) == _saved_from(line)
                             for c in candidates):
            eol = match.group(3) or ""
            split += [match.group(1) + eol, match.group(2) + eol]
        else:
            split.append(line)
    for line in split:
        body = line.lstrip(" \t")
        for i, cand in enumerate(candidates):
            pattern = NEW_NAME.split(cand.lstrip(" \t"))
            if len(pattern) == 1:
                ok = cand.lstrip(" \t") == body
            else:
                # the leading model name, or (LMFlow) the whole receiver expression it replaced
                ok = re.fullmatch(r"(?:[\w.]+|[\w.]+\(.*?\))".join(map(re.escape, pattern)), body, flags=re.S) is not None
            # a plain wrapper's save from where its LoRA lives: the receiver gained a chain
            ok = ok or (".save_pretrained(" in body and _saved_from(cand) == _saved_from(body))
            if ok:
                del candidates[i]
                if ".save_pretrained(" in body:
                    saves.add(_saved_from(body))
                break
        else:
            raise AssertionError(f"removed line not explained by a rule edit: {line!r}\n" + _diff(before, after))
    # A save that became a choice between chains: the other copies of it and the choice's tests.
    candidates = [c for c in candidates if not (saves and (_saved_from(c) in saves or CHOICE.match(c)))]
    assert not candidates, f"added lines not explained by a rule edit: {candidates!r}"


SAVE_RECEIVER = re.compile(r"[\w.]+(?:\([^()]*\)[\w.]*)*\.save_pretrained\(")
CHOICE = re.compile(r"^[ \t]*(?:(?:if|elif) (?:(?:not )?(?:hasattr|isinstance)\([\w.]+, [^()]+\)(?: and | or |:))+|else:)\r?\n?$")


def _saved_from(line: str) -> str:
    """The line with the receiver of its save taken out (and its indentation)."""
    return SAVE_RECEIVER.sub("<receiver>.save_pretrained(", line.lstrip(" \t"))


def _is_state_dict_patch(text: str) -> bool:
    """Lines that are only `x = m.state_dict` / `m.state_dict = ...get_peft_model_state_dict...`."""
    import ast
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(text))
    except SyntaxError:
        return False
    if not tree.body:
        return False
    for statement in tree.body:
        if not isinstance(statement, ast.Assign) or len(statement.targets) != 1:
            return False
        target, value = statement.targets[0], statement.value
        copy = isinstance(value, ast.Attribute) and value.attr == "state_dict"
        patch = isinstance(target, ast.Attribute) and target.attr == "state_dict" and "get_peft_model_state_dict" in ast.unparse(value)
        if not (copy or patch):
            return False
    return True


def _diff(a: bytes, b: bytes) -> str:
    return "".join(difflib.unified_diff(a.decode("latin-1").splitlines(True), b.decode("latin-1").splitlines(True)))
