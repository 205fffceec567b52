"""The `if`-test classifiers: LoRA flags and rank-zero guards."""

from __future__ import annotations

import re

import libcst as cst
import pytest

from lora_codemod.analysis.guards import guarded_branch, is_pure_guard
from lora_codemod.analysis.lora import Branch, lora_branch
from lora_codemod.config import DEFAULT_FLAG_PATTERN

FLAG = re.compile(DEFAULT_FLAG_PATTERN)


@pytest.mark.parametrize(
    "test,expected",
    [
        ("args.use_lora", Branch.BODY),
        ("use_lora", Branch.BODY),
        ("self.args.lora_enable", Branch.BODY),
        ("cfg['lora_enable']", Branch.BODY),
        ('cfg.get("use_lora", False)', Branch.BODY),
        ("args.use_lora and not args.debug", Branch.BODY),
        ("args.debug and (x and args.use_peft)", Branch.BODY),
        ("args.use_lora is True", Branch.BODY),
        ("not args.use_lora", Branch.ELSE),
        ("args.use_lora or args.full", None),
        ("not args.use_lora and x", None),
        ("args.use_lora_plus", None),  # full match only
        ("args.lora_r > 0", None),
        ("cfg[key]", None),
        ("len(args.use_lora)", None),
    ],
)
def test_lora_branch(test, expected):
    assert lora_branch(cst.parse_expression(test), FLAG) is expected


def test_custom_flag_pattern():
    assert lora_branch(cst.parse_expression("args.peft_on"), re.compile("peft_on")) is Branch.BODY
    assert lora_branch(cst.parse_expression("args.use_lora"), re.compile("peft_on")) is None


@pytest.mark.parametrize(
    "test,expected",
    [
        ("trainer.is_world_process_zero()", Branch.BODY),
        ("self.trainer.is_local_process_zero()", Branch.BODY),
        ("accelerator.is_main_process", Branch.BODY),
        ("accelerator.is_local_main_process", Branch.BODY),
        ("training_args.should_save", Branch.BODY),
        ("trainer.args.should_save", Branch.BODY),
        ("local_rank == 0", Branch.BODY),
        ("args.local_rank in (-1, 0)", Branch.BODY),
        ("args.local_rank in [-1, 0]", Branch.BODY),
        ("0 == dist.get_rank()", Branch.BODY),
        ("torch.distributed.get_rank() == 0", Branch.BODY),
        ("training_args.process_index == 0", Branch.BODY),
        ('int(os.environ.get("LOCAL_RANK", 0)) == 0', Branch.BODY),
        ('os.environ["RANK"] == 0', Branch.BODY),
        ("rank != 0", Branch.ELSE),
        ("local_rank not in (-1, 0)", Branch.ELSE),
        ("not trainer.is_world_process_zero()", Branch.ELSE),
        ("trainer.is_world_process_zero() and args.use_lora", Branch.BODY),
        ("trainer.is_world_process_zero() or args.force", None),
        ("local_rank == 1", None),
        ("local_rank in (0, 1)", None),
        ("epoch == 0", None),
    ],
)
def test_guarded_branch(test, expected):
    assert guarded_branch(cst.parse_expression(test)) is expected


def test_pure_guard_rejects_extra_conditions():
    assert is_pure_guard(cst.parse_expression("trainer.is_world_process_zero()"))
    assert not is_pure_guard(cst.parse_expression("trainer.is_world_process_zero() and args.save"))
    assert not is_pure_guard(cst.parse_expression("not trainer.is_world_process_zero()"))
