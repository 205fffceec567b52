"""Click commands `verify`, `tiny-model` and `smoke`; the main CLI registers them.

torch, transformers and peft are imported inside the commands only, so that importing this
module (for `lora-codemod --help` or `fix`) costs nothing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from lora_codemod.engine import EXIT_ERROR
from lora_codemod.smoke import INSTALL_HINT, missing_smoke_modules



def _fail_usage(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _require_smoke_extra() -> None:
    missing = missing_smoke_modules()
    if missing:
        _fail_usage(f"the smoke extra is not installed (missing {', '.join(missing)}): {INSTALL_HINT}")


PYTHON_PROBE = """
import importlib.util, json, sys
facts = {"new_enough": sys.version_info[:2] >= (3, 8), "torch": importlib.util.find_spec("torch") is not None,
         "cuda": False, "count": 0}
if facts["torch"] and sys.argv[1] != "cpu":
    import torch
    facts["cuda"] = bool(torch.cuda.is_available())
    facts["count"] = int(torch.cuda.device_count()) if facts["cuda"] else 0
print(json.dumps(facts))
"""


def _check_python(python: str, device: str) -> tuple[str, dict]:
    """--python must name an interpreter that has torch (the script's own libraries are its business).

    Its CUDA facts come from there too: that torch, not ours, will run the script.
    """
    import shutil
    import subprocess

    found = shutil.which(python) or (python if Path(python).is_file() else None)
    if found is None:
        _fail_usage(f"--python {python}: no such interpreter")
    probe = subprocess.run([found, "-c", PYTHON_PROBE, device], capture_output=True, text=True)
    facts = None
    if probe.returncode == 0:
        try:
            facts = json.loads(probe.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            facts = None
    if facts is None or not facts.get("torch"):
        last = (probe.stderr.strip().splitlines() or ["No module named 'torch'" if facts else "it did not run"])[-1]
        _fail_usage(f"--python {python}: cannot import torch there ({last})")
    return str(Path(found).absolute()), facts


class _stdout_to_stderr:
    """Point file descriptor 1 at stderr for a while (child processes and C extensions included)."""

    def __init__(self, active: bool):
        self.active = active
        self.saved = None

    def __enter__(self):
        if self.active:
            sys.stdout.flush()
            try:
                self.saved = os.dup(1)
                os.dup2(2, 1)
            except OSError:  # no real descriptor (an in-process test runner): Python-level only
                self.saved = None
            self._python_stdout = sys.stdout
            sys.stdout = sys.stderr
        return self

    def __exit__(self, *exc):
        if self.active:
            sys.stdout = self._python_stdout
            if self.saved is not None:
                sys.stdout.flush()
                os.dup2(self.saved, 1)
                os.close(self.saved)
        return False


PIPED_WIDTH = 100  # piped or redirected output: wide enough that tables keep whole words


def _stdout_console():
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal and console.width < PIPED_WIDTH:
        console = Console(highlight=False, width=PIPED_WIDTH)
    return console


@click.command("verify")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--base-model",
    type=click.Path(path_type=Path),
    default=None,
    help="Also load the adapter onto this base model with PeftModel.from_pretrained and run one forward pass.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(directory: Path, base_model: Path | None, as_json: bool) -> None:
    """Check that DIRECTORY holds a usable LoRA adapter (exit 0 pass, 1 a check failed, 2 usage error)."""
    _require_smoke_extra()
    if not directory.exists():
        _fail_usage(f"{directory}: no such directory")
    if not directory.is_dir():
        _fail_usage(f"{directory}: not a directory")
    if base_model is not None and not base_model.exists():
        _fail_usage(f"--base-model {base_model}: no such file or directory")

    from lora_codemod.smoke.child.verify import verify_adapter_dir

    result = verify_adapter_dir(directory, base_model=str(base_model) if base_model else None)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        from lora_codemod.smoke.report import render_verify

        render_verify(_stdout_console(), result)
    sys.exit(result.exit_code)


@click.command("tiny-model")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Write into DIRECTORY even if it is not empty.")
def tiny_model(directory: Path, force: bool) -> None:
    """Write a tiny Llama-style causal LM and its fast tokenizer to DIRECTORY, offline."""
    _require_smoke_extra()
    if directory.exists() and not directory.is_dir():
        _fail_usage(f"{directory}: exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        _fail_usage(f"{directory}: not empty (use --force to write into it anyway)")

    from lora_codemod.smoke.child.tiny_model import write_tiny_model
    from lora_codemod.smoke.child.verify import human_bytes

    info = write_tiny_model(directory)
    click.echo(
        f"wrote a tiny causal LM ({info.parameters:,} parameters, {human_bytes(info.bytes_on_disk)}) "
        f"and its tokenizer to {info.path} in {info.seconds:.1f} s"
    )


@click.command("smoke")
@click.argument("script", type=click.Path(path_type=Path))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--adapter-dir",
    default=None,
    help="Where the adapter must appear ({output_dir} and {tiny_model} are replaced; relative to the "
    "run's working directory). Default: where the run's last save of a LoRA model went.",
)
@click.option("--base-model", default=None, help="Also load the adapter onto this base model (e.g. {tiny_model}).")
@click.option("--nproc", type=int, default=1, show_default=True, help="Processes; more than 1 runs under torchrun.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--no-fix", is_flag=True, help="Run the script as it is, unpatched.")
@click.option("--compare", is_flag=True, help="Run unpatched, then patched, and show both side by side.")
@click.option(
    "--unsafe-fixes",
    is_flag=True,
    help="Patch with the fixes that `fix` applies only under --unsafe-fixes too (e.g. a plain wrapper's save "
    "chosen by the setup's hasattr tests).",
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Stop every Trainer after this many steps and evaluate on as few batches (0: no cap).",
)
@click.option(
    "--like",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Make hub-model stand-ins by shrinking this local model's config (sub-configs included) and keep its tokenizer.",
)
@click.option("--no-standins", is_flag=True, help="Load hub models and datasets for real (no tiny stand-ins).")
@click.option(
    "--python",
    "python",
    default=None,
    help="Run the script (and torchrun) with this interpreter: your own environment and library versions.",
)
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds before every process is stopped.")
@click.option("--keep", is_flag=True, help="Keep the temporary directory ({output_dir}, tiny model, logs).")
@click.option("--verbose", "-v", is_flag=True, help="Stream the script's output to stderr as it comes (piped too).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def smoke(
    script: Path,
    script_args: tuple[str, ...],
    adapter_dir: str,
    base_model: str | None,
    nproc: int,
    device: str,
    no_fix: bool,
    compare: bool,
    unsafe_fixes: bool,
    max_steps: int,
    like: Path | None,
    no_standins: bool,
    python: str | None,
    timeout: float,
    keep: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    """Apply the fix to SCRIPT in memory, run it on a tiny model, and verify the adapter it saves.

    \b
    Example:
      lora-codemod smoke train.py -- --model_path {tiny_model} \\
          --output_dir {output_dir} --use_lora --max_steps 2

    Hub model, tokenizer and dataset names get tiny offline stand-ins; on the CPU, bf16/fp16,
    CUDA placement, quantization and flash attention are shimmed; every Trainer stops after
    --max-steps. The report lists each substitution under "stand-ins".

    Exit 0: the script succeeded and the adapter verified (with --nproc > 1, one rank wrote it);
    1: the script ran but a check failed; 2: it could not run (usage, crash, timeout).
    Under --compare the patched run decides the exit code.
    """
    _require_smoke_extra()
    if no_fix and compare:
        _fail_usage("--no-fix and --compare exclude each other")
    if no_fix and unsafe_fixes:
        _fail_usage("--no-fix and --unsafe-fixes exclude each other (nothing is patched)")
    if timeout <= 0:
        _fail_usage("--timeout must be positive")
    if not script.is_file():
        _fail_usage(f"{script}: no such file")
    if like is not None and not (like / "config.json").is_file():
        _fail_usage(f"--like {like}: no config.json there")
    if like is not None and no_standins:
        _fail_usage("--like and --no-standins exclude each other")
    python_facts = None
    if python is not None:
        python, python_facts = _check_python(python, device)

    from rich.console import Console

    from lora_codemod.smoke.device import LaunchError, plan_for_this_machine, plan_launch
    from lora_codemod.smoke.report import QuietStatus, StreamingStatus, TerminalStatus, render_session
    from lora_codemod.smoke.runner import SmokeRequest, SmokeUsageError, run_smoke

    try:
        if python_facts is not None and device != "cpu":
            plan = plan_launch(device, nproc, python_facts["cuda"], python_facts["count"],
                               os.environ.get("CUDA_VISIBLE_DEVICES"))
        else:
            plan = plan_for_this_machine(device, nproc)
    except LaunchError as exc:
        _fail_usage(str(exc))

    status_console = Console(stderr=True, highlight=False)
    # -v streams the script's output to stderr as it comes, to a terminal or a pipe alike (then no
    # live line: it would be redrawn over the output). Without -v, a terminal gets the live line.
    stream_to = (getattr(sys.stderr, "buffer", None) or os.fdopen(os.dup(2), "wb")) if verbose else None
    if verbose:
        sink = StreamingStatus(status_console)
    else:
        sink = TerminalStatus(status_console) if status_console.is_terminal else QuietStatus()
    modes = ("unpatched", "patched") if compare else (("unpatched",) if no_fix else ("patched",))
    request = SmokeRequest(
        script=script,
        script_args=list(script_args),
        adapter_dir_template=adapter_dir,
        base_model_template=base_model,
        plan=plan,
        timeout=timeout,
        modes=modes,
        keep=keep,
        verbose=verbose,
        stream_to=stream_to,
        max_steps=max_steps,
        standins=not no_standins,
        like=str(like) if like else None,
        python=python,
        unsafe_fixes=unsafe_fixes,
    )
    try:
        # --json: stdout carries the JSON alone; anything printed meanwhile (library warnings while
        # the tiny model is made or the adapter verified) goes to stderr.
        with _stdout_to_stderr(as_json):
            session = run_smoke(request, sink)
    except SmokeUsageError as exc:
        if exc.complete_line:
            click.echo(str(exc), err=True)
            sys.exit(EXIT_ERROR)
        _fail_usage(str(exc))
    if as_json:
        click.echo(json.dumps(session.as_dict(), indent=2))
    else:
        render_session(_stdout_console(), session)
    sys.exit(session.status_code)
