"""Which `if` tests mean "LoRA is on".

A test is a LoRA flag when its last name part (or string key) fully matches the flag pattern:
`args.use_lora`, `cfg["lora_enable"]`, `cfg.get("use_lora")`, alone or `and`-ed with other
conditions. `if not <flag>:` makes its `else:` the LoRA block instead.
"""

from __future__ import annotations

import enum
import re

import libcst as cst

from lora_codemod.analysis.names import dotted_name, last_part, string_value


class Branch(enum.Enum):
    """A branch of an `if`: its body, or its `else:`."""

    BODY = "body"  # `if <flag>:` -> the body runs only with LoRA on
    ELSE = "else"  # `if not <flag>:` -> the else branch runs only with LoRA on


def _is_flag(expr: cst.BaseExpression, flag: re.Pattern[str]) -> bool:
    name = dotted_name(expr)
    if name is not None:
        return flag.fullmatch(last_part(name)) is not None
    if isinstance(expr, cst.Subscript) and len(expr.slice) == 1:
        element = expr.slice[0].slice
        if isinstance(element, cst.Index):
            key = string_value(element.value)
            return key is not None and flag.fullmatch(key) is not None
        return False
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value == "get":
        if expr.args and expr.args[0].keyword is None:
            key = string_value(expr.args[0].value)
            return key is not None and flag.fullmatch(key) is not None
        return False
    if isinstance(expr, cst.Comparison) and len(expr.comparisons) == 1:
        # `args.use_lora is True` / `== True`
        target = expr.comparisons[0]
        if isinstance(target.operator, (cst.Is, cst.Equal)) and isinstance(target.comparator, cst.Name):
            if target.comparator.value == "True":
                return _is_flag(expr.left, flag)
    return False


def _is_positive(test: cst.BaseExpression, flag: re.Pattern[str]) -> bool:
    if _is_flag(test, flag):
        return True
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And):
        return _is_positive(test.left, flag) or _is_positive(test.right, flag)
    return False


def lora_branch(test: cst.BaseExpression, flag: re.Pattern[str]) -> Branch | None:
    """Which branch of `if <test>:` runs only when LoRA is on, if any."""
    if _is_positive(test, flag):
        return Branch.BODY
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        if _is_flag(test.expression, flag):
            return Branch.ELSE
    return None
