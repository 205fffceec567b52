"""Small helpers that turn libcst expressions into plain values (dotted names, string literals)."""

from __future__ import annotations

import ast

import libcst as cst


def dotted_name(node: cst.BaseExpression) -> str | None:
    """`self.model.text_model` -> "self.model.text_model"; anything else -> None."""
    parts: list[str] = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if not isinstance(node, cst.Name):
        return None
    parts.append(node.value)
    return ".".join(reversed(parts))


def dotted_prefix_nodes(node: cst.BaseExpression) -> list[tuple[str, cst.BaseExpression]]:
    """Every dotted prefix of a name chain with its node, shortest first.

    `self.model.x` -> [("self", Name), ("self.model", Attribute), ("self.model.x", Attribute)].
    """
    chain: list[cst.BaseExpression] = []
    while isinstance(node, cst.Attribute):
        chain.append(node)
        node = node.value
    if not isinstance(node, cst.Name):
        return []
    chain.append(node)
    chain.reverse()
    out: list[tuple[str, cst.BaseExpression]] = []
    name = ""
    for part in chain:
        piece = part.value if isinstance(part, cst.Name) else part.attr.value  # type: ignore[union-attr]
        name = piece if not name else f"{name}.{piece}"
        out.append((name, part))
    return out


def last_part(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def callee_name(call: cst.Call) -> str | None:
    return dotted_name(call.func)


def string_value(node: cst.BaseExpression | None) -> str | None:
    """The value of a plain (non f-) string literal, else None."""
    if isinstance(node, cst.SimpleString):
        text = node.value
        quote = text[:1]
        if quote in "'\"" and "\\" not in text and "\r" not in text:  # no escape, no CR: no need to compile it
            return text[3:-3] if text.startswith(quote * 3) and len(text) >= 6 else text[1:-1]
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, str) else None
    if isinstance(node, cst.ConcatenatedString):
        left, right = string_value(node.left), string_value(node.right)
        if left is not None and right is not None:
            return left + right
    return None


def call_arg(call: cst.Call, position: int, keyword: str | None = None) -> cst.BaseExpression | None:
    """The `keyword=` argument of a call, else its positional argument at `position`."""
    if keyword is not None:
        for arg in call.args:
            if arg.keyword is not None and arg.keyword.value == keyword:
                return arg.value
    positional = [a for a in call.args if a.keyword is None and not a.star]
    if position < len(positional):
        return positional[position].value
    return None


def has_keyword(call: cst.Call, keyword: str) -> bool:
    return any(a.keyword is not None and a.keyword.value == keyword for a in call.args)
