"""Two cheap stages before libcst, which costs 6-8x the stdlib parser (shared/docs/performance-notes.md).

1. text: the file mentions `save_pretrained` together with a Trainer class or a LoRA flag word
   (LC001, LC002, LC004), `peft_config` and a Trainer (LC008), or a collective call and an
   `if` on a rank idiom (LC003);
2. stdlib `ast`: some `save_pretrained` call in a file that names a `...Trainer` (a trainer can
   reach it) or that sits in an `if` whose test mentions a LoRA flag word; or some `if` whose
   test names a rank/main-process idiom holds a call that may be collective (a known
   collective name, or a call of a function defined in the file).

Both stages only ever answer "maybe" or "certainly not": each accepts a superset of what the
rules act on (tests/test_prefilter.py holds them to that), so a file they drop has no finding.
"""

from __future__ import annotations

import ast
import os
import re
from functools import lru_cache

from lora_codemod.analysis.vocabulary import (
    BARE_COLLECTIVES,
    FUZZY_COLLECTIVE,
    GROUP_COLLECTIVES,
    GUARD_WORDS,
    NOT_A_MODEL_PART,
    NOT_A_MODEL_WORD,
    PREDICATE,
    TRAINER_COLLECTIVES,
)

_GUARD_WORDS = GUARD_WORDS
_COLLECTIVE_WORDS = GROUP_COLLECTIVES | TRAINER_COLLECTIVES | BARE_COLLECTIVES
# The text stage reads every file of a tree: its tests are substring tests and case-sensitive
# regexes over the lowercased bytes (re's IGNORECASE is 10-20x slower than bytes.lower()).
_COLLECTIVE_TEXT = re.compile(
    rb"(?:barrier|wait_for_everyone|get_state_dict|all_reduce|broadcast|reduce|gather|zero_?3|consolidated)\w*\s*\(")
# A trainer's collectives only count on a trainer, so the file must mention one.
_TRAINER_COLLECTIVE_TEXT = re.compile(rb"(?:save_model|push_to_hub|save_state|train|evaluate|predict)\s*\(")
# An `if`/`elif` test (up to its colon, across continuation lines) that names an atom able to
# make a branch rank-zero only (analysis/ranks.py): a rank or a main-process test, as a whole
# word. World size and is_initialized() alone never exclude ranks 1 and 2.
_GUARD_TEXT = re.compile(rb"\b(?:el)?if\b[^:]*?\b(?:local_rank|rank|global_rank|process_index|local_process_index"
                         rb"|get_rank|get_local_rank|is_world_process_zero|is_local_process_zero|is_main_process"
                         rb"|is_local_main_process|should_save)\b")
_GUARD_PARTS = (b"rank", b"process_index", b"process_zero", b"main_process", b"should_save")  # in every guard word
_TRAINER = re.compile(rb"Trainer\b")


@lru_cache(maxsize=8)
def _flag_text(pattern: str) -> re.Pattern[bytes]:
    return re.compile(pattern.encode(), re.IGNORECASE)


def text_may_need_work(source: bytes, flag_pattern: str) -> bool:
    saves = b"save_pretrained" in source
    if saves and (_TRAINER.search(source) or b"Callback" in source or _flag_text(flag_pattern).search(source)):
        return True
    if b"peft_config" in source and _TRAINER.search(source):  # LC008
        return True
    if b"get_peft_model_state_dict" in source and b"state_dict =" in source:  # LC005
        return True
    low = source.lower()
    if (saves or b"save_model" in source) and (b"deepspeed" in low or b"accelerate" in low):  # LC007
        return True
    if not any(part in low for part in _GUARD_PARTS) or _GUARD_TEXT.search(low) is None:
        return False
    if _COLLECTIVE_TEXT.search(low) is not None:
        return True
    return _TRAINER_COLLECTIVE_TEXT.search(source) is not None and b"trainer" in low


def _words(node: ast.AST) -> set[str]:
    words = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            words.add(child.id)
        elif isinstance(child, ast.Attribute):
            words.add(child.attr)
        elif isinstance(child, ast.Constant) and isinstance(child.value, str):
            words.add(child.value)
    return words


def _method(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _names_a_non_model(func: ast.expr) -> bool:
    """`tokenizer.save_pretrained`, `model.config.save_pretrained`, `x.get_tokenizer().save_pretrained`:
    the analysis decides "not a model" by these names first (analysis/saves.py), whatever they hold."""
    if not isinstance(func, ast.Attribute):
        return False
    receiver = func.value
    if isinstance(receiver, ast.Attribute):
        return NOT_A_MODEL_PART.search(receiver.attr) is not None
    if isinstance(receiver, ast.Name):
        return NOT_A_MODEL_PART.search(receiver.id) is not None
    if isinstance(receiver, ast.Call):
        return NOT_A_MODEL_WORD.search(_method(receiver)) is not None
    return False


def _is_trainer_word(word: str) -> bool:
    return word.endswith("Trainer") and not word.endswith("ForTrainer")


def _receiver(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        try:
            return ast.unparse(func.value)
        except Exception:  # pragma: no cover - unparse handles every expression ast produces
            return ""
    return ""


def _same_file_target(call: ast.Call) -> tuple[bool, str] | None:
    """(is a method, name) of the same-file function a call may run: `f()` or `self.f()`."""
    func = call.func
    if isinstance(func, ast.Name):
        return (False, func.id)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
        return (True, func.attr)
    return None


def _may_be_collective(call: ast.Call, trainers: set[str], closure: set) -> bool:
    """A superset of analysis/collectives.py: the same names, receivers checked as loosely."""
    method = _method(call)
    if not method or PREDICATE.search(method):
        return False
    receiver = _receiver(call)
    last = receiver.rsplit(".", 1)[-1]
    if method in TRAINER_COLLECTIVES and (last.lower().endswith("trainer") or receiver in trainers):
        return True
    if method in GROUP_COLLECTIVES and (last.lower() in ("dist", "distributed") or "accelerator" in receiver.lower()):
        return True
    if not receiver and method in BARE_COLLECTIVES:
        return True
    return FUZZY_COLLECTIVE.search(method) is not None or _same_file_target(call) in closure


_PARSED: list = [None, None]  # the last source parsed here and its tree (the engine reuses it)


def parse_ast(source: bytes) -> ast.Module | None:
    """The stdlib tree of `source` (None when the stdlib cannot parse it), parsed once: the
    prefilter and the engine's finding positions ask for the same bytes in turn."""
    if _PARSED[0] is source:
        return _PARSED[1]
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        tree = None
    _PARSED[0], _PARSED[1] = source, tree
    return tree


def ast_may_need_work(source: bytes, flag: re.Pattern[str]) -> bool:
    """False only when no rule can apply. A file the stdlib cannot parse says True: libcst
    then parses it and reports the error with its position."""
    tree = parse_ast(source)
    if tree is None:
        return True
    saves = False
    trainer = False
    peft_config = False
    callback = False
    saves_model = False
    trainer_classes: set[str] = set()
    deepspeed_keyword = False
    model_saves = False  # a save_pretrained whose receiver is not named a tokenizer/processor/config
    called: set[str] = set()
    patched_state_dict = False
    trainers: set[str] = set()
    guards: list[ast.If] = []
    flagged_ifs: list[ast.If] = []
    # Per same-file function (is it a method, its name): the calls that may be collective, and the
    # same-file functions it may run. One pass over the tree.
    candidates: dict[tuple[bool, str], list[ast.Call]] = {}
    runs: dict[tuple[bool, str], set[tuple[bool, str]]] = {}
    stack: list[tuple[ast.AST, tuple[bool, str] | None, bool]] = [(tree, None, False)]
    while stack:
        node, function, in_class = stack.pop()
        if isinstance(node, ast.Call):
            method = _method(node)
            if method == "save_pretrained":
                saves = True
                model_saves = model_saves or not _names_a_non_model(node.func)
            elif method == "save_model":
                saves_model = True
            if _is_trainer_word(method):
                trainer = True  # a trainer is constructed (a class defined or imported is not enough)
            called.add(method)
            for keyword in node.keywords:
                if keyword.arg == "peft_config":
                    peft_config = True
                elif keyword.arg == "deepspeed":
                    deepspeed_keyword = True
            if function is not None:
                target = _same_file_target(node)
                if target is not None:
                    runs[function].add(target)
                if method in _COLLECTIVE_WORDS or FUZZY_COLLECTIVE.search(method):
                    candidates[function].append(node)
        elif isinstance(node, ast.Assign):
            if isinstance(node.value, ast.Call) and _is_trainer_word(_method(node.value)):
                trainers.update(ast.unparse(t) for t in node.targets)
            if any(isinstance(t, ast.Attribute) and t.attr == "state_dict" for t in node.targets):
                patched_state_dict = patched_state_dict or any(
                    isinstance(c, ast.Call) and _method(c) == "get_peft_model_state_dict" for c in ast.walk(node.value))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = (in_class, node.name)
            candidates.setdefault(function, [])
            runs.setdefault(function, set())
        elif isinstance(node, ast.ClassDef):
            if any(_is_trainer_word(w) for b in node.bases for w in _words(b)):
                trainer_classes.add(node.name)  # constructed under its own name: see below
            if any(w.endswith("Callback") for b in node.bases for w in _words(b)):
                callback = True
        elif isinstance(node, (ast.ImportFrom, ast.Import)):
            trainer_classes.update(alias.asname for alias in node.names
                                   if alias.asname and _is_trainer_word(alias.name))
        elif isinstance(node, ast.If):
            words = _words(node.test)
            if words & _GUARD_WORDS:
                guards.append(node)
            if any(flag.search(w) for w in words):
                flagged_ifs.append(node)
        is_class = isinstance(node, ast.ClassDef)
        stack.extend((child, function, is_class) for child in ast.iter_child_nodes(node))
    trainer = trainer or bool(trainer_classes & called)
    if trainer and (model_saves or peft_config):
        return True
    if callback and saves:  # a TrainerCallback subclass: LC006 guards any save in it
        return True
    if patched_state_dict:
        return True
    if (model_saves or saves_model) and deepspeed_keyword:  # LC007: a config given in the script
        return True  # (configs beside the file are the engine's question: zero3_config_beside)
    for node in flagged_ifs:
        if any(isinstance(c, ast.Call) and _method(c) == "save_pretrained" for c in ast.walk(node)):
            return True
    if not guards:
        return False
    # Same-file functions that (through each other) make a collective call, resolved as
    # analysis/collectives.py does: `f()` runs a module-level function, `self.f()` a method.
    closure = {key for key, calls in candidates.items() if any(_may_be_collective(c, trainers, set()) for c in calls)}
    changed = True
    while changed:
        changed = False
        for key, targets in runs.items():
            if key not in closure and targets & closure:
                closure.add(key)
                changed = True
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    for node in guards:
        for branch in _guarded_branches(node, source, starts):
            for statement in branch:
                for child in ast.walk(statement):
                    if isinstance(child, ast.Call) and _may_be_collective(child, trainers, closure):
                        return True
    return False


def _guarded_branches(node: ast.If, source: bytes, starts: list[int]) -> list[list[ast.stmt]]:
    """The branches of `if` that the rank evaluator (analysis/ranks.py, the rules' own) calls a
    rank-zero guard. Only reached by files with a rank-worded test and a collective call, so the
    libcst import it costs is rare; the test expression alone is parsed."""
    from lora_codemod.analysis.ranks import is_guard

    import libcst as cst

    test_node = node.test  # ast offsets are UTF-8 byte offsets into the line
    begin = starts[test_node.lineno - 1] + test_node.col_offset
    end = starts[(test_node.end_lineno or test_node.lineno) - 1] + (test_node.end_col_offset or 0)
    segment = source[begin:end].decode("utf-8", errors="replace")
    try:
        test = cst.parse_expression(" ".join(segment.split())) if segment else None
    except Exception:  # a test libcst cannot read alone: keep both branches (superset)
        test = None
    if test is None:
        return [node.body, node.orelse]
    branches = []
    if is_guard(test, True):
        branches.append(node.body)
    if is_guard(test, False):
        branches.append(node.orelse)
    # A guard may also be a conjunction with an enclosing test: nested ifs are walked as guards
    # of their own, and an inner `if` of either branch can still be one.
    return branches


def zero3_config_beside(path: str) -> bool:
    """Is there a ZeRO-3 configuration that does not gather on save beside `path` (LC007)?
    (A few globs; each config file is read once per version.)"""
    from lora_codemod.analysis.deepspeed import configs_beside

    if not os.path.isfile(path):
        return False
    return bool(configs_beside(os.path.dirname(os.path.abspath(path))))
