"""Signals that a script runs as several processes (torchrun / DDP / DeepSpeed / FSDP / accelerate).

Each helper returns a short human reason ("reads LOCAL_RANK") or None; LC002 quotes the first one.
"""

from __future__ import annotations

import re

import libcst as cst

from lora_codemod.analysis.names import dotted_name, last_part, string_value

ENV_KEYS = {"LOCAL_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"}
_NAMES = {
    "init_process_group": "calls init_process_group",
    "DistributedDataParallel": "uses DistributedDataParallel",
    "DistributedSampler": "uses DistributedSampler",
    "local_rank": "has a local_rank",
}
_KEYWORDS = {"deepspeed", "fsdp", "fsdp_config", "local_rank"}
# Launch commands live in docstrings and comments of the scripts they launch.
TEXT_SIGNAL = re.compile(r"\btorchrun\b|--nproc[_-]per[_-]node|\baccelerate\s+launch\b|\bdeepspeed\s+(?:--\w|[\w./-]+\.py\b)")


def name_signal(name: str) -> str | None:
    return _NAMES.get(name)


def string_signal(node: cst.SimpleString) -> str | None:
    # parser.add_argument("--local_rank", ...)
    if string_value(node) in ("--local_rank", "--local-rank"):
        return "has a --local_rank argument"
    return None


def environ_subscript_signal(node: cst.Subscript) -> str | None:
    # os.environ["LOCAL_RANK"]
    if last_part(dotted_name(node.value) or "") != "environ" or len(node.slice) != 1:
        return None
    element = node.slice[0].slice
    if isinstance(element, cst.Index):
        key = string_value(element.value)
        if key in ENV_KEYS:
            return f"reads {key} from the environment"
    return None


def call_signals(node: cst.Call, callee: str) -> list[str]:
    signals = []
    if node.args and (callee.endswith("environ.get") or last_part(callee) == "getenv"):
        key = string_value(node.args[0].value)
        if key in ENV_KEYS:
            signals.append(f"reads {key} from the environment")
    if last_part(callee) == "Accelerator":
        signals.append("builds an Accelerator")
    for arg in node.args:
        if arg.keyword is None:
            continue
        keyword = arg.keyword.value
        if keyword.startswith("ddp_") or keyword in _KEYWORDS:
            signals.append(f"passes {keyword}=")
    return signals


# -- (v3) pytest tests: one process, whatever the module around them imports ---------------

def is_test_module(path: str) -> bool:
    """A module pytest collects by default (`python_files = test_*.py *_test.py`)."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def _is_test_class(cls: cst.ClassDef, test_cases: set[str]) -> bool:
    """pytest collects a class `Test*`, and a `unittest.TestCase` subclass whatever its name."""
    if cls.name.value.startswith("Test"):
        return True
    bases = {last_part(dotted_name(b.value) or "") for b in cls.bases if b.keyword is None}
    return bool(bases & ({"TestCase", "IsolatedAsyncioTestCase"} | test_cases))


def pytest_test_of(scope, path: str, test_cases: set[str]) -> cst.FunctionDef | None:
    """The outermost pytest test that holds `scope` (itself or a function nested in it), when
    `path` is a test module: a module-level function `test*`, or a method of a test class.
    `test_cases`: the module's classes deriving from `TestCase`. None for anything else."""
    if not is_test_module(path):
        return None
    found = None
    while scope is not None and isinstance(scope.node, cst.FunctionDef):
        parent = scope.parent
        at_module = parent is not None and isinstance(parent.node, cst.Module)
        if scope.cls is not None:
            # A method: its scope's parent is the scope around the class (the module for a
            # class pytest can collect).
            if at_module and _is_test_class(scope.cls, test_cases):
                found = scope.node
        elif at_module and scope.node.name.value.startswith("test"):
            found = scope.node
        scope = parent
    return found


class _Ids(cst.CSTVisitor):
    def __init__(self) -> None:
        self.ids: set[int] = set()

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.ids.add(id(node))
        return True


def signal_for(index, scope, path: str, cache: dict | None = None) -> str | None:
    """Why code in `scope` runs as several processes (the first signal), or None.

    In a pytest test only the test's own body counts (nested functions included): a test runs in
    pytest's one process, and what the module imports for other tests (`torch.distributed` for
    tests that spawn their own process groups) does not make its saves distributed; the test's
    own `init_process_group`, `LOCAL_RANK` or `torchrun` command still does. Elsewhere, any
    signal of the module. `cache`: per-test answers, kept by the caller for one module."""
    test = pytest_test_of(scope, path, index.subclasses_of("TestCase") | index.subclasses_of("IsolatedAsyncioTestCase"))
    if test is None:
        return index.signals[0][0] if index.signals else None
    cache = {} if cache is None else cache
    if id(test) not in cache:
        visitor = _Ids()
        test.body.visit(visitor)
        own = [signal for signal, node in index.signals if node is not None and id(node) in visitor.ids]
        match = TEXT_SIGNAL.search(index.module.code_for_node(test.body))
        if match:
            own.append(f"mentions {match.group(0).strip()}")
        cache[id(test)] = own[0] if own else None
    return cache[id(test)]
