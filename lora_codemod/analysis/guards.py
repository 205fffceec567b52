"""Which `if` tests restrict a branch to the main process (rank zero)."""

from __future__ import annotations

import libcst as cst

from lora_codemod.analysis.lora import Branch
from lora_codemod.analysis.names import callee_name, dotted_name, last_part, string_value

_MAIN_PROCESS_CALLS = {"is_world_process_zero", "is_local_process_zero", "is_main_process", "is_local_main_process"}
_MAIN_PROCESS_FLAGS = {"is_main_process", "is_local_main_process", "should_save"}
_RANK_NAMES = {"local_rank", "rank", "process_index", "local_process_index", "global_rank"}
_RANK_ENV_KEYS = {"LOCAL_RANK", "RANK"}


def _is_rank(expr: cst.BaseExpression) -> bool:
    name = dotted_name(expr)
    if name is not None:
        return last_part(name) in _RANK_NAMES
    if isinstance(expr, cst.Call):
        callee = callee_name(expr) or ""
        if last_part(callee) == "get_rank":
            return True
        if callee == "int" and expr.args:  # int(os.environ.get("LOCAL_RANK", 0))
            return _is_rank(expr.args[0].value)
        if last_part(callee) in {"get", "getenv"} and expr.args:
            return string_value(expr.args[0].value) in _RANK_ENV_KEYS
    if isinstance(expr, cst.Subscript) and len(expr.slice) == 1:
        element = expr.slice[0].slice
        return isinstance(element, cst.Index) and string_value(element.value) in _RANK_ENV_KEYS
    return False


def _int_value(expr: cst.BaseExpression) -> int | None:
    if isinstance(expr, cst.Integer):
        return int(expr.value, 0)
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        inner = _int_value(expr.expression)
        return None if inner is None else -inner
    return None


def _is_zero_set(expr: cst.BaseExpression) -> bool:
    """`(-1, 0)`, `[0]`, `{0, -1}`: the ranks that count as "main"."""
    if isinstance(expr, (cst.Tuple, cst.List, cst.Set)):
        values = [_int_value(e.value) for e in expr.elements]
        return 0 in values and all(v in (-1, 0) for v in values)
    return False


def _comparison_branch(test: cst.Comparison) -> Branch | None:
    if len(test.comparisons) != 1:
        return None
    target = test.comparisons[0]
    left, op, right = test.left, target.operator, target.comparator
    if _is_rank(right) and _int_value(left) == 0:  # `0 == rank`
        left, right = right, left
    if not _is_rank(left):
        return None
    if _int_value(right) == 0:
        if isinstance(op, (cst.Equal, cst.Is, cst.LessThanEqual)):
            return Branch.BODY
        if isinstance(op, (cst.NotEqual, cst.IsNot, cst.GreaterThan)):
            return Branch.ELSE
    if _is_zero_set(right):
        if isinstance(op, cst.In):
            return Branch.BODY
        if isinstance(op, cst.NotIn):
            return Branch.ELSE
    return None


def guarded_branch(test: cst.BaseExpression) -> Branch | None:
    """Which branch of `if <test>:` runs on the main process only (BODY, ELSE), if any.

    `and` keeps a guard (`if is_main and x:`), `or` does not, `not` flips it.
    """
    if isinstance(test, cst.Call):
        if last_part(callee_name(test) or "") in _MAIN_PROCESS_CALLS:
            return Branch.BODY
        return None
    name = dotted_name(test)
    if name is not None:
        return Branch.BODY if last_part(name) in _MAIN_PROCESS_FLAGS else None
    if isinstance(test, cst.Comparison):
        return _comparison_branch(test)
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        inner = guarded_branch(test.expression)
        if inner is Branch.BODY:
            return Branch.ELSE
        if inner is Branch.ELSE:
            return Branch.BODY
        return None
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And):
        if Branch.BODY in (guarded_branch(test.left), guarded_branch(test.right)):
            return Branch.BODY
    return None


def is_pure_guard(test: cst.BaseExpression) -> bool:
    """True when the test checks the rank and nothing else (safe to move statements out of)."""
    return guarded_branch(test) is Branch.BODY and not isinstance(test, cst.BooleanOperation)
