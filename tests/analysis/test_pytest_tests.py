"""(v3) Test modules: a pytest test runs in one process, so only its own body's distributed
signals make its saves distributed; the module's imports for other tests do not."""

from __future__ import annotations

import re

import libcst as cst
import pytest

from lora_codemod.analysis.distributed import is_test_module, pytest_test_of, signal_for
from lora_codemod.analysis.index import build_index
from lora_codemod.config import DEFAULT_FLAG_PATTERN
from tests.helpers import run

FLAG = re.compile(DEFAULT_FLAG_PATTERN)

# peft's tests/test_gpu_examples.py, cut down: the module imports torch.distributed for the
# tests that spawn their own process groups; this test trains and saves in pytest's process.
ONE_PROCESS_TEST = """\
import tempfile

import torch.distributed as dist
from peft import get_peft_model
from transformers import Trainer


def test_causal_lm_training(model, config, training_args):
    peft_model = get_peft_model(model, config)
    trainer = Trainer(model=peft_model, args=training_args)
    trainer.train()
    with tempfile.TemporaryDirectory() as tmp_dir:
        peft_model.save_pretrained(tmp_dir)
"""


def lc002(source: str, path: str) -> list[str]:
    result = run(source.encode(), path=path)
    return [f.message for f in result.findings if f.code == "LC002"]


def save_scope(source: str):
    index = build_index(cst.parse_module(source), FLAG, source)
    return index, index.save_calls[-1].scope


@pytest.mark.parametrize("path, expected", [
    ("test_train.py", True), ("tests/test_gpu_examples.py", True), ("pkg/train_test.py", True),
    ("C:\\repo\\tests\\test_x.py", True), ("/abs/path/tests/test_x.py", True),
    ("train.py", False), ("tests/helpers.py", False), ("testing.py", False), ("tests/conftest.py", False),
    ("test_notebook.ipynb", False), ("<stdin>", False), ("contest_test.txt", False),
])
def test_is_test_module(path, expected):
    assert is_test_module(path) is expected


def test_a_test_in_a_test_module_is_one_process():
    assert lc002(ONE_PROCESS_TEST, "tests/test_gpu_examples.py") == []
    index, scope = save_scope(ONE_PROCESS_TEST)
    assert index.signals  # the module has its signal ...
    assert signal_for(index, scope, "tests/test_gpu_examples.py") is None  # ... the test does not


def test_the_same_code_outside_a_test_module_is_distributed():
    assert lc002(ONE_PROCESS_TEST, "train.py") == [
        "every rank writes the adapter (distributed script: imports torch.distributed)"]


def test_a_test_function_in_a_module_not_named_like_a_test_is_not_a_test():
    assert lc002(ONE_PROCESS_TEST, "tests/helpers.py") != []
    assert lc002(ONE_PROCESS_TEST, "tests/testing_utils.py") != []


def test_its_own_body_reading_local_rank_still_counts():
    source = ONE_PROCESS_TEST.replace(
        "    peft_model = get_peft_model(model, config)\n",
        "    import os\n    rank = int(os.environ[\"LOCAL_RANK\"])\n    peft_model = get_peft_model(model, config)\n")
    assert lc002(source, "tests/test_gpu_examples.py") == [
        "every rank writes the adapter (distributed script: reads LOCAL_RANK from the environment)"]


def test_its_own_init_process_group_in_a_nested_function_counts():
    source = ONE_PROCESS_TEST.replace(
        "    trainer.train()\n",
        "    def setup():\n        dist.init_process_group('nccl')\n    setup()\n    trainer.train()\n")
    assert lc002(source, "test_train.py") == [
        "every rank writes the adapter (distributed script: calls init_process_group)"]


def test_a_torchrun_command_in_its_body_counts():
    source = ONE_PROCESS_TEST.replace(
        "    trainer.train()\n",
        "    subprocess.run([\"torchrun\", \"--nproc_per_node=2\", \"train.py\"], check=True)\n    trainer.train()\n")
    assert lc002(source, "test_train.py") == ["every rank writes the adapter (distributed script: mentions torchrun)"]
    # The same command in another test of the module does not count for this one.
    other = ONE_PROCESS_TEST + "\n\ndef test_launch():\n    subprocess.run([\"torchrun\", \"x.py\"])\n"
    assert lc002(other, "test_train.py") == []


def test_methods_of_test_classes():
    method = "\n".join("    " + line if line else "" for line in ONE_PROCESS_TEST.split("\n")[5:]).replace(
        "(model, config", "(self, model, config")
    head = "\n".join(ONE_PROCESS_TEST.split("\n")[:5]) + "\n"
    for cls in ("class TestPeftTorchao:", "class PeftHqqGPUTests(unittest.TestCase):",
                "class Base(unittest.TestCase):\n    pass\n\n\nclass LoraTests(Base):"):
        source = head + "\n\n" + cls + "\n" + method
        assert lc002(source, "tests/test_gpu_examples.py") == [], cls
    # A class pytest does not collect is not a test: the module's signal counts.
    source = head + "\n\nclass Runner:\n" + method
    assert lc002(source, "tests/test_gpu_examples.py") != []


def test_a_module_level_worker_in_a_test_module_keeps_the_modules_signal():
    """mp.spawn's target runs once per rank: it is not a test."""
    source = ONE_PROCESS_TEST.replace("def test_causal_lm_training", "def _worker")
    assert lc002(source, "tests/test_gpu_examples.py") != []


def test_pytest_test_of_names_the_outermost_test():
    source = """\
def test_outer():
    def inner():
        def deeper():
            pass
"""
    module = cst.parse_module(source)
    index = build_index(module, FLAG, source)
    deeper = next(s for s in index.scopes if s.name == "deeper")
    test = pytest_test_of(deeper, "test_x.py", set())
    assert test is not None and test.name.value == "test_outer"
    assert pytest_test_of(deeper, "x.py", set()) is None
    assert pytest_test_of(index.scopes[0], "test_x.py", set()) is None  # the module itself
