"""Two cheap stages before libcst, which costs 6-8x the stdlib parser (shared/docs/performance-notes.md).

1. text: the file mentions `save_model`, or `save_pretrained` and a LoRA flag word;
2. stdlib `ast`: some `if` whose test names a LoRA flag holds a `save_pretrained` call, or whose
   test names a rank/main-process idiom holds a `save_model` call.

Both stages only ever answer "maybe" or "certainly not": each accepts a superset of what the
rules act on (tests/test_prefilter.py holds them to that), so a file they drop has no finding.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache

# Every name the rank-zero guard idioms of analysis/guards.py are built from.
_GUARD_WORDS = frozenset({
    "is_world_process_zero", "is_local_process_zero", "is_main_process", "is_local_main_process",
    "should_save", "local_rank", "rank", "process_index", "local_process_index", "global_rank",
    "get_rank", "LOCAL_RANK", "RANK",
})


@lru_cache(maxsize=8)
def _flag_word(pattern: str) -> re.Pattern[bytes]:
    # A flag name or key that fully matches the pattern stands between non-word characters.
    return re.compile(rb"(?<![A-Za-z0-9_])(?:" + pattern.encode() + rb")(?![A-Za-z0-9_])", re.IGNORECASE)


def text_may_need_work(source: bytes, flag_pattern: str) -> bool:
    if b"save_model" in source:  # LC003
        return True
    return b"save_pretrained" in source and _flag_word(flag_pattern).search(source) is not None


def _words(test: ast.expr) -> set[str]:
    words = set()
    for node in ast.walk(test):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            words.add(node.value)
    return words


def _calls_method(statements: list[ast.stmt], method: str) -> bool:
    for statement in statements:
        for node in ast.walk(statement):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method:
                return True
    return False


def ast_may_need_work(source: bytes, flag: re.Pattern[str]) -> bool:
    """False only when no rule can apply. A file the stdlib cannot parse says True: libcst
    then parses it and reports the error with its position."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return True
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        words = _words(node.test)
        branches = node.body + node.orelse
        if any(flag.fullmatch(w) for w in words) and _calls_method(branches, "save_pretrained"):
            return True
        if words & _GUARD_WORDS and _calls_method(branches, "save_model"):
            return True
    return False
