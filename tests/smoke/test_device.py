"""Device, backend and launcher choice, with CUDA faked in and out."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from lora_codemod.smoke import device
from lora_codemod.smoke.commands import smoke
from lora_codemod.smoke.device import LaunchError, cuda_ruled_out, launch_command, plan_for_this_machine, plan_launch

from .conftest import FIXTURE_SCRIPTS, REPO, run_cli


@pytest.fixture
def fake_cuda(monkeypatch):
    def install(available: bool, count: int):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        # This torch is a CPU build: without this the probe would not even ask it.
        monkeypatch.setattr(device, "cuda_ruled_out", lambda: False)
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

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


def test_more_ranks_than_gpus_share_them_on_gloo(fake_cuda):
    fake_cuda(True, 1)
    plan = plan_for_this_machine("cuda", 2)
    assert (plan.device, plan.nproc, plan.backend, plan.forced_backend) == ("cuda", 2, "gloo", "gloo")
    assert plan.shared_gpus == ("0",)
    assert plan.sharing() == "2 ranks share 1 GPU (gloo)"
    assert plan.describe() == "CUDA, 2 processes under torchrun (gloo; 2 ranks share 1 GPU)"
    # accelerate would hand DDP device_ids=[LOCAL_RANK]: on a sharing rank its one GPU is cuda:0.
    assert plan.env["ACCELERATE_BYPASS_DEVICE_MAP"] == "true"
    assert "CUDA_VISIBLE_DEVICES" not in plan.env  # the bootstrap narrows it per rank
    # Controls: as many GPUs as ranks, or one process, share nothing and keep nccl.
    for count, nproc, backend in ((2, 2, "nccl"), (1, 1, None)):
        fake_cuda(True, count)
        plan = plan_for_this_machine("cuda", nproc)
        assert (plan.backend, plan.forced_backend, plan.shared_gpus, plan.sharing()) == (backend, None, (), None)
        assert "ACCELERATE_BYPASS_DEVICE_MAP" not in plan.env


def test_shared_gpus_are_the_visible_ones_in_turn():
    plan = plan_launch("cuda", 3, cuda_available=True, cuda_device_count=2, cuda_visible_devices="3,5")
    assert plan.shared_gpus == ("3", "5") and plan.sharing() == "3 ranks share 2 GPUs (gloo)"
    assert plan_launch("cuda", 3, True, 2, cuda_visible_devices=None).shared_gpus == ("0", "1")
    assert plan_launch("auto", 4, True, 1, cuda_visible_devices="GPU-1a2b").shared_gpus == ("GPU-1a2b",)


def test_each_sharing_rank_sees_one_gpu(monkeypatch):
    from lora_codemod.smoke.child.bootstrap import share_gpus

    settings = {"share_gpus": {"visible": ["3", "5"]}}
    seen = []
    for rank in range(4):
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
        assert share_gpus(settings) == ["3", "5"][rank % 2]
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["3", "5", "3", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert share_gpus({"share_gpus": None}) is None and os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"  # control


def test_sharing_ranks_get_gloo_forced_and_the_gpus_to_share(tmp_path):
    from lora_codemod.smoke.child.instrument import FORCE_BACKEND_ENV
    from lora_codemod.smoke.runner import child_environment

    plan = plan_launch("cuda", 2, True, 1)
    env = child_environment(plan, "code.py", "train.py", str(tmp_path), {}, str(tmp_path))
    assert env[FORCE_BACKEND_ENV] == "gloo" and env["ACCELERATE_BYPASS_DEVICE_MAP"] == "true"
    own = child_environment(plan_launch("cuda", 2, True, 2), "code.py", "train.py", str(tmp_path), {}, str(tmp_path))
    assert FORCE_BACKEND_ENV not in own  # control: a GPU a rank, nccl as the script asks


def test_cuda_is_ruled_out_without_importing_torch():
    none = {}
    linux_gpu = lambda path: path == "/dev/nvidia0"  # noqa: E731
    nothing = lambda path: False  # noqa: E731
    assert cuda_ruled_out(none, "2.13.0+cpu", "linux", linux_gpu)  # a CPU build of torch
    assert cuda_ruled_out({"CUDA_VISIBLE_DEVICES": ""}, "2.13.0", "linux", linux_gpu)  # GPUs hidden
    assert cuda_ruled_out({"CUDA_VISIBLE_DEVICES": "-1"}, "2.13.0", "linux", linux_gpu)
    assert cuda_ruled_out(none, "2.13.0", "darwin", linux_gpu)
    assert cuda_ruled_out(none, "2.13.0", "linux", nothing)  # no NVIDIA or ROCm device node
    # Anything else is asked of torch.
    assert not cuda_ruled_out(none, "2.13.0", "linux", linux_gpu)
    assert not cuda_ruled_out({"CUDA_VISIBLE_DEVICES": "0"}, "2.13.0+cu130", "linux", linux_gpu)
    assert not cuda_ruled_out(none, "2.13.0", "win32", nothing)


def test_probing_this_machine_does_not_import_torch_here():
    code = ("import sys; from lora_codemod.smoke.device import plan_for_this_machine; "
            "plan = plan_for_this_machine('auto', 1); print(plan.device, 'torch' in sys.modules)")
    # GPUs hidden: ruled out on any machine (CI's torch is a CPU build, which is ruled out as well).
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert output.split() == ["cpu", "False"]


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


def test_smoke_cli_refuses_cuda_without_a_gpu(fake_cuda):
    fake_cuda(False, 0)
    script = FIXTURE_SCRIPTS / "train_single.py"
    code, _, stderr = run_cli(smoke, [str(script), "--device", "cuda", "--nproc", "2"])
    assert code == 2
    assert stderr.strip().splitlines() == [
        "error: --device cuda: torch sees no CUDA device (torch.cuda.is_available() is False)"]
