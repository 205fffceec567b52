"""Who may import whom: analysis/ is read-only facts, the notebook and report modules are adapters
the engine and commands call, and the smoke child runs in the user's interpreter."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lora_codemod"

# module (dotted, under lora_codemod) -> the lora_codemod modules it must never import
FORBIDDEN = {
    "analysis": ("engine", "rules", "plan", "notebook", "commands", "report", "cli", "cache", "smoke", "suppression"),
    "notebook": ("engine", "rules", "plan", "analysis", "commands", "cli", "cache", "smoke"),
    "ipython": ("engine", "rules", "plan", "analysis", "commands", "cli", "notebook", "smoke"),
    "findings": ("engine", "rules", "plan", "analysis", "commands", "cli", "notebook", "smoke", "report"),
    "rules": ("engine", "commands", "cli", "notebook", "cache", "smoke"),
    "plan": ("engine", "rules", "commands", "cli", "notebook", "cache", "smoke"),
    "engine": ("commands", "cli", "smoke"),
    "cache": ("commands", "cli", "smoke", "rules", "analysis"),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lora_codemod"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lora_codemod")}
    return found


def _modules(prefix: str) -> list[Path]:
    single = PACKAGE / f"{prefix}.py"
    return [single] if single.exists() else sorted((PACKAGE / prefix).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports(layer):
    for path in _modules(layer):
        for name in _imports(path):
            parts = name.split(".")
            top = parts[1] if len(parts) > 1 else ""
            assert top not in FORBIDDEN[layer], f"{path.relative_to(PACKAGE)} imports {name}"


def test_the_check_sees_an_import():
    """The scan finds a function-level import too (a control for the test above)."""
    assert "lora_codemod.notebook" in _imports(PACKAGE / "engine.py")
