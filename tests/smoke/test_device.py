"""Device, backend and launcher choice, with CUDA faked in and out."""

from __future__ import annotations

import sys

import pytest
import torch

from lora_codemod.smoke.commands import smoke
from lora_codemod.smoke.device import LaunchError, launch_command, plan_for_this_machine, plan_launch

from .conftest import FIXTURE_SCRIPTS, run_cli


@pytest.fixture
def fake_cuda(monkeypatch):
    def install(available: bool, count: int):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    return install


def test_auto_picks_cuda_when_available(fake_cuda):
    fake_cuda(True, 2)
    plan = plan_for_this_machine("auto", 2)
    assert (plan.device, plan.backend, plan.forced_backend) == ("cuda", "nccl", None)
    assert "CUDA_VISIBLE_DEVICES" not in plan.env  # the user's GPU selection is kept


def test_auto_falls_back_to_cpu_and_gloo(fake_cuda):
    fake_cuda(False, 0)
    plan = plan_for_this_machine("auto", 2)
    assert (plan.device, plan.backend, plan.forced_backend) == ("cpu", "gloo", "gloo")
    assert plan.env["CUDA_VISIBLE_DEVICES"] == ""
    assert plan.env["ACCELERATE_USE_CPU"] == "true"


def test_cpu_hides_gpus_even_when_there_are_some(fake_cuda):
    fake_cuda(True, 4)
    plan = plan_for_this_machine("cpu", 2)
    assert plan.device == "cpu" and plan.env["CUDA_VISIBLE_DEVICES"] == "" and plan.backend == "gloo"


def test_single_process_has_no_backend(fake_cuda):
    fake_cuda(True, 1)
    plan = plan_for_this_machine("auto", 1)
    assert plan.device == "cuda" and plan.backend is None and not plan.distributed


def test_cuda_with_more_processes_than_gpus_is_an_error(fake_cuda):
    fake_cuda(True, 2)
    with pytest.raises(LaunchError, match="only 2 GPU"):
        plan_for_this_machine("cuda", 3)


def test_cuda_without_cuda_is_an_error(fake_cuda):
    fake_cuda(False, 0)
    with pytest.raises(LaunchError, match="no CUDA device"):
        plan_for_this_machine("cuda", 1)


@pytest.mark.parametrize("nproc", [0, -2])
def test_nproc_must_be_positive(nproc):
    with pytest.raises(LaunchError, match="--nproc"):
        plan_launch("cpu", nproc, cuda_available=False, cuda_device_count=0)


def test_launch_command_uses_torchrun_of_this_interpreter():
    single = launch_command(plan_launch("cpu", 1, False, 0), ["--x", "1"])
    assert single == [sys.executable, "-m", "lora_codemod.smoke.child.bootstrap", "--x", "1"]
    multi = launch_command(plan_launch("cpu", 2, False, 0), ["--x", "1"])
    assert multi[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert multi[multi.index("--nproc_per_node") + 1] == "2"
    assert multi[-4:] == ["-m", "lora_codemod.smoke.child.bootstrap", "--x", "1"]


def test_smoke_cli_reports_too_many_processes_for_the_gpus(fake_cuda):
    fake_cuda(True, 1)
    script = FIXTURE_SCRIPTS / "train_single.py"
    code, _, stderr = run_cli(smoke, [str(script), "--device", "cuda", "--nproc", "2"])
    assert code == 2
    assert stderr.strip().splitlines() == ["error: --device cuda --nproc 2: only 1 GPU(s) visible; use --nproc 1 or --device cpu"]
