"""Device, distributed backend and launcher for a smoke run: pure decisions, so they can be unit-tested.

`plan_launch` takes the facts (is CUDA there, how many GPUs) as arguments; `probe_cuda` asks torch.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

DEVICE_CHOICES = ("auto", "cpu", "cuda")


class LaunchError(ValueError):
    """A device/process request that cannot be honoured; the message is one line for the user."""


@dataclass(frozen=True)
class LaunchPlan:
    device: str  # "cpu" or "cuda"
    nproc: int
    backend: str | None  # process-group backend under torchrun; None for a single process
    # Environment changes for the child: a value of None removes the variable.
    env: dict[str, str | None] = field(default_factory=dict)
    # Backend the bootstrap forces on any init_process_group call and on TrainingArguments'
    # ddp_backend (CPU: a script asking for nccl would fail without a GPU; ranks sharing a GPU:
    # nccl refuses two ranks on one device). The run is about saving, not about the backend.
    forced_backend: str | None = None
    # More ranks than GPUs: the visible GPUs (CUDA_VISIBLE_DEVICES entries) the ranks take in turn.
    shared_gpus: tuple[str, ...] = ()

    @property
    def distributed(self) -> bool:
        return self.nproc > 1

    def sharing(self) -> str | None:
        """"2 ranks share 1 GPU (gloo)" when they do."""
        if not self.shared_gpus:
            return None
        count = len(self.shared_gpus)
        return f"{self.nproc} ranks share {count} GPU{'s' if count > 1 else ''} ({self.backend})"

    def describe(self) -> str:
        where = "CPU" if self.device == "cpu" else "CUDA"
        if not self.distributed:
            return f"{where}, 1 process"
        count = len(self.shared_gpus)
        shared = f"; {self.nproc} ranks share {count} GPU{'s' if count > 1 else ''}" if self.shared_gpus else ""
        return f"{where}, {self.nproc} processes under torchrun ({self.backend}{shared})"


def visible_gpus(count: int, cuda_visible_devices: str | None) -> list[str]:
    """The CUDA_VISIBLE_DEVICES entries of the `count` GPUs torch sees (indices when it is unset)."""
    if cuda_visible_devices is None:
        return [str(i) for i in range(count)]
    entries = [e.strip() for e in cuda_visible_devices.split(",") if e.strip()]
    return entries[:count] if len(entries) >= count else [str(i) for i in range(count)]


def cuda_ruled_out(environ=None, torch_version: str | None = None, platform: str | None = None,
                   exists=os.path.exists) -> bool:
    """True when CUDA cannot be there, decided without importing torch (about 1.5 s saved).

    A CPU build of torch, GPUs hidden by CUDA_VISIBLE_DEVICES, macOS, or a Linux machine with no
    NVIDIA or ROCm device node. Anything else is asked of torch itself.
    """
    environ = os.environ if environ is None else environ
    if environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return True
    if torch_version is None:
        try:
            from importlib import metadata

            torch_version = metadata.version("torch")
        except Exception:
            return False
    if "+cpu" in torch_version:
        return True
    platform = platform or sys.platform
    if platform == "darwin":
        return True
    if platform.startswith("linux"):
        return not any(exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/kfd"))
    return False


def probe_cuda() -> tuple[bool, int]:
    """(available, device count) as torch sees them in this process."""
    if cuda_ruled_out():
        return False, 0
    import torch

    available = bool(torch.cuda.is_available())
    return available, (int(torch.cuda.device_count()) if available else 0)


def plan_launch(device: str, nproc: int, cuda_available: bool, cuda_device_count: int,
                cuda_visible_devices: str | None = None) -> LaunchPlan:
    if device not in DEVICE_CHOICES:
        raise LaunchError(f"--device must be one of {', '.join(DEVICE_CHOICES)}, not {device!r}")
    if nproc < 1:
        raise LaunchError(f"--nproc must be 1 or more, not {nproc}")
    if device == "auto":
        device = "cuda" if cuda_available else "cpu"

    env: dict[str, str | None] = {}
    if nproc > 1:
        # torchrun would warn and set this anyway; one thread per rank keeps small CPUs responsive.
        env["OMP_NUM_THREADS"] = "1"

    if device == "cpu":
        # Hide GPUs so that Trainer/accelerate pick the CPU, exactly as on a machine without one.
        env["CUDA_VISIBLE_DEVICES"] = ""
        # Without this, TrainingArguments on a GPU-less machine under torchrun does not join a
        # process group at all: every rank trains alone and believes it is rank zero.
        env["ACCELERATE_USE_CPU"] = "true"
        backend = "gloo" if nproc > 1 else None
        return LaunchPlan("cpu", nproc, backend, env, forced_backend=backend)

    if not cuda_available or cuda_device_count < 1:
        raise LaunchError("--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False)")
    if nproc > cuda_device_count:
        # Ranks take the visible GPUs in turn, each rank seeing only its own (the bootstrap sets
        # CUDA_VISIBLE_DEVICES per rank), on gloo: nccl refuses two ranks on one GPU. accelerate
        # must not pass device_ids=[LOCAL_RANK] to DDP then (a rank's one GPU is cuda:0).
        env["ACCELERATE_BYPASS_DEVICE_MAP"] = "true"
        shared = tuple(visible_gpus(cuda_device_count, cuda_visible_devices))
        return LaunchPlan("cuda", nproc, "gloo", env, forced_backend="gloo", shared_gpus=shared)
    # CUDA_VISIBLE_DEVICES is left as the user set it: device_count already reflects it, and
    # torchrun's LOCAL_RANK indexes into that visible set.
    return LaunchPlan("cuda", nproc, "nccl" if nproc > 1 else None, env, forced_backend=None)


def plan_for_this_machine(device: str, nproc: int) -> LaunchPlan:
    """plan_launch with the facts from torch; skips the torch import when the CPU is requested."""
    if device == "cpu":
        return plan_launch(device, nproc, cuda_available=False, cuda_device_count=0)
    available, count = probe_cuda()
    return plan_launch(device, nproc, available, count, os.environ.get("CUDA_VISIBLE_DEVICES"))


def launch_command(plan: LaunchPlan, script_args: list[str], python: str | None = None,
                   rank_logs: str | None = None) -> list[str]:
    """The child's argv: the bootstrap module, under torchrun of this interpreter when nproc > 1.

    `rank_logs`: a directory where torchrun keeps each rank's own output (and error file) while
    still printing it, each line prefixed with its rank (`--log-dir ... --tee 3`)."""
    python = python or sys.executable
    bootstrap = ["-m", "lora_codemod.smoke.child.bootstrap", *script_args]
    if not plan.distributed:
        return [python, *bootstrap]
    # `python -m torch.distributed.run` is the torchrun entry point of this interpreter.
    # --standalone: a local rendezvous on a free port, so parallel runs do not collide.
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc_per_node",
        str(plan.nproc),
        *(["--log-dir", rank_logs, "--tee", "3"] if rank_logs else []),
        *bootstrap,
    ]
