"""The child's code runs in the user's interpreter: it may import only the standard library and the
user's ML libraries. Every module of lora_codemod/smoke/child is imported with rich, click and
libcst (and pathspec) made unimportable, in a fresh interpreter."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys

from lora_codemod.smoke import child

from .conftest import REPO

BLOCKED = ("rich", "click", "libcst", "pathspec")
IMPORT_ALL = """
import importlib, json, sys
for name in {blocked!r}:
    sys.modules[name] = None  # `import name` now raises ImportError
results = {{}}
for module in {modules!r}:
    try:
        importlib.import_module(module)
        results[module] = None
    except ImportError as exc:
        results[module] = str(exc)
heavy = sorted(m for m in ("torch", "transformers", "peft", "accelerate", "datasets") if m in sys.modules)
print(json.dumps({{"results": results, "heavy": heavy}}))
"""


def _import_in_fresh_python(modules: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = IMPORT_ALL.format(blocked=BLOCKED, modules=modules)
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(output)


def test_every_child_module_imports_without_rich_click_or_libcst():
    modules = [f"lora_codemod.smoke.child.{m.name}" for m in pkgutil.iter_modules(child.__path__)]
    assert {"lora_codemod.smoke.child.bootstrap", "lora_codemod.smoke.child.instrument",
            "lora_codemod.smoke.child.standins", "lora_codemod.smoke.child.shims",
            "lora_codemod.smoke.child.families", "lora_codemod.smoke.child.spm",
            "lora_codemod.smoke.child.tiny_model", "lora_codemod.smoke.child.cache",
            "lora_codemod.smoke.child.verify"} <= set(modules)
    # Controls, in the same interpreter: the blocking works, and a parent-side module fails under it.
    found = _import_in_fresh_python(["rich", "lora_codemod.smoke.report", *modules])
    assert found["results"].pop("rich") is not None
    assert found["results"].pop("lora_codemod.smoke.report") is not None
    assert found["results"] == {m: None for m in modules}
    # And lazily: importing them loads none of the ML libraries (the bootstrap runs before the script).
    assert found["heavy"] == []
