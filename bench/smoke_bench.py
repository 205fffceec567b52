"""Wall-clock figures for `lora-codemod smoke` (printed, never asserted).

    python bench/smoke_bench.py [--repeat 3]

1. every fixture script under `smoke` (patched), single process and `--nproc 2`;
2. the instrumentation's overhead on a run that needs no stand-in: the same script and arguments
   run by plain `python` and by the smoke bootstrap with every hook installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "fixtures" / "scripts"
TINY_ARGS = ["--model_path", "{tiny_model}", "--output_dir", "{output_dir}", "--use_lora", "--max_steps", "2"]
FIXTURES = {
    "train_single.py": TINY_ARGS,
    "train_wrapper.py": TINY_ARGS,
    "train_ddp.py": TINY_ARGS,
    "sft_hub.py": ["--output_dir", "{output_dir}"],
    "ddp_gpt2_jsonl.py": ["--output_dir", "{output_dir}"],
}


def timed(command: list[str], env: dict | None = None, cwd: str | None = None) -> tuple[float, int, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
    return time.perf_counter() - started, result.returncode, result.stdout


def smoke_runs(repeat: int) -> None:
    print("fixture                nproc  wall time (s), each run            verdict")
    with tempfile.TemporaryDirectory() as cwd:
        for name, args in FIXTURES.items():
            for nproc in (1, 2):
                times, verdict = [], ""
                for _ in range(repeat):
                    seconds, code, out = timed([sys.executable, "-c", "from lora_codemod.cli import main; main()", "smoke",
                                                str(SCRIPTS / name), "--device", "cpu", "--nproc", str(nproc), "--json",
                                                "--", *args], cwd=cwd)
                    times.append(seconds)
                    try:
                        verdict = json.loads(out)["runs"][-1]["verdict"][:60]
                    except (ValueError, KeyError, IndexError):
                        verdict = f"exit {code}"
                print(f"{name:22} {nproc:5}  {' '.join(f'{t:5.1f}' for t in times):34} {verdict}")


def overhead(repeat: int) -> None:
    from lora_codemod.smoke.child.bootstrap import CODE_ENV, SCRIPT_ENV
    from lora_codemod.smoke.child.instrument import EVENTS_ENV, SETTINGS_ENV
    from lora_codemod.smoke.child.tiny_model import write_tiny_model

    with tempfile.TemporaryDirectory() as work:
        tiny = str(write_tiny_model(Path(work) / "tiny").path)
        script = SCRIPTS / "train_single.py"
        args = ["--model_path", tiny, "--output_dir", str(Path(work) / "out"), "--use_lora", "--max_steps", "2"]
        base_env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
        settings = {"standins": True, "cpu": True, "max_steps": 2, "cache": str(Path(work) / "standins")}
        smoke_env = {**base_env, CODE_ENV: str(script), SCRIPT_ENV: str(script), EVENTS_ENV: str(Path(work) / "events"),
                     SETTINGS_ENV: json.dumps(settings)}
        plain, instrumented = [], []
        for _ in range(repeat):
            plain.append(timed([sys.executable, str(script), *args], base_env)[0])
            instrumented.append(timed([sys.executable, "-m", "lora_codemod.smoke.child.bootstrap", *args], smoke_env)[0])
        p, i = statistics.median(plain), statistics.median(instrumented)
        print(f"\ntrain_single.py on a local tiny model (needs no stand-in), median of {repeat}:")
        print(f"  plain python:            {p:5.2f} s   ({' '.join(f'{t:.2f}' for t in plain)})")
        print(f"  smoke bootstrap + hooks: {i:5.2f} s   ({' '.join(f'{t:.2f}' for t in instrumented)})")
        print(f"  overhead:                {i - p:+5.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("runs", "overhead"))
    args = parser.parse_args()
    if args.only != "overhead":
        smoke_runs(args.repeat)
    if args.only != "runs":
        overhead(args.repeat)


if __name__ == "__main__":
    main()
