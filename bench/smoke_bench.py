"""Wall-clock figures for `lora-codemod smoke` (printed, never asserted).

    python bench/smoke_bench.py [--repeat 3] [--only runs|overhead|pair] [--device cpu|cuda] [--json out.json]

1. every fixture script under `smoke` (patched), single process and `--nproc 2`;
2. the instrumentation's overhead on a run that needs no stand-in: the same script and arguments
   run by plain `python` and by the smoke bootstrap with every hook installed;
4. a chatty child (`--only chatty`): a script that logs a traceback per failed sample until it has
   printed 100 MB, under smoke (and with -v piped to a file): the parent's CPU while it watched,
   against the child's (goal <= 10%), and what the log kept;
3. the overhead pair (goal <= 1.3x): `smoke train_single.py -- --model_path {tiny_model} ...`,
   the second run in an environment (its cache filled), against plain `python` running the same
   patched script on a tiny model made beforehand; with where the smoke run's extra time went.
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
    "train_plain_wrapper_lora.py": TINY_ARGS,
    "train_ddp.py": TINY_ARGS,
    "train_plain_wrapper_lora_ddp.py": TINY_ARGS,
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


OVERHEAD_GOAL = 1.3


def overhead_pair(repeat: int, device: str, json_path: str | None) -> dict:
    """The issue-15 goal: `smoke SCRIPT {tiny_model}` (the second run in an environment, its cache
    filled) against a plain run of the same patched script on a tiny model made beforehand.

    Both run the same way each time (alternating, so a load change hits both); the smoke run's
    JSON says where its time outside the script went (fix, tiny model, verify, the parent).
    """
    from lora_codemod.smoke.child.cache import CACHE_ENV
    from lora_codemod.smoke.child.tiny_model import write_tiny_model
    from lora_codemod.smoke.runner import apply_fix

    script = SCRIPTS / "train_single.py"
    with tempfile.TemporaryDirectory() as work:
        work_path = Path(work)
        patched_dir = work_path / "patched"
        patched_dir.mkdir()
        (patched_dir / "tiny_data.py").write_bytes((SCRIPTS / "tiny_data.py").read_bytes())
        patched = patched_dir / script.name
        patched.write_bytes(apply_fix(script, script.read_bytes())[0])
        tiny = str(write_tiny_model(work_path / "tiny").path)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", CACHE_ENV: str(work_path / "cache")}
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        plain_args = ["--model_path", tiny, "--output_dir", str(work_path / "plain-out"), "--use_lora", "--max_steps", "2"]
        smoke_command = [sys.executable, "-c", "from lora_codemod.cli import main; main()", "smoke", str(script),
                         "--device", device, "--json", "--", "--model_path", "{tiny_model}", "--output_dir",
                         "{output_dir}", "--use_lora", "--max_steps", "2"]
        first, code, out = timed(smoke_command, env, cwd=work)  # fills the environment's cache
        first_run = json.loads(out)["runs"][0] if code in (0, 1) else {}
        plain, smoke, breakdowns = [], [], []
        for _ in range(repeat):
            plain.append(timed([sys.executable, str(patched), *plain_args], env, cwd=str(patched_dir))[0])
            seconds, code, out = timed(smoke_command, env, cwd=work)
            smoke.append(seconds)
            run = json.loads(out)["runs"][0]
            breakdowns.append({**run["timings"], "total": seconds, "verdict": run["verdict"]})
        p, s = statistics.median(plain), statistics.median(smoke)
        child = statistics.median(b["child"] for b in breakdowns)
        result = {
            "device": device, "repeat": repeat, "plain_s": round(p, 2), "smoke_s": round(s, 2),
            "ratio": round(s / p, 3), "goal": OVERHEAD_GOAL, "met": s / p <= OVERHEAD_GOAL,
            "first_smoke_s": round(first, 2), "first_tiny_model_s": first_run.get("timings", {}).get("tiny model"),
            "child_s": round(child, 2), "parent_s": round(s - child, 2), "runs": breakdowns,
            "plain_runs": [round(t, 2) for t in plain],
        }
    print(f"\noverhead pair on {device}: train_single.py patched, 2 steps, median of {repeat} (alternating)")
    print(f"  plain python, tiny model made beforehand: {p:5.2f} s   ({' '.join(f'{t:.2f}' for t in plain)})")
    print(f"  smoke with {{tiny_model}}, cache filled:   {s:5.2f} s   ({' '.join(f'{t:.2f}' for t in smoke)})")
    print(f"    of which the child process:             {child:5.2f} s (tiny model copy "
          f"{statistics.median(b.get('tiny model', 0) for b in breakdowns):.2f} s, verify "
          f"{statistics.median(b.get('verify', 0) for b in breakdowns):.2f} s), the parent {s - child:.2f} s "
          f"(fix {statistics.median(b.get('fix', 0) for b in breakdowns):.2f} s)")
    print(f"  first smoke run (makes the cache):        {first:5.2f} s (tiny model {result['first_tiny_model_s']} s)")
    print(f"  ratio {s / p:.2f}x (goal <= {OVERHEAD_GOAL}x): {'met' if result['met'] else 'NOT met'}")
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    return result


CHATTY = """
import logging, sys
logging.basicConfig(level=logging.INFO)
logger = logging.getLogger("dataset")
def load_sample(index):
    raise FileNotFoundError(f"sample {index}: audio file missing")
printed, index = 0, 0
while printed < LIMIT:
    try:
        load_sample(index)
    except Exception as e:
        logger.error(f"Error processing sample at index {index}: {e}", exc_info=True)
    printed += 383  # what one record above prints
    index += 1
print("done")
"""


def chatty(limit: int = 100_000_000) -> dict:
    """Parent CPU against the child's on a script printing `limit` bytes (goal <= 10%)."""
    results = {}
    with tempfile.TemporaryDirectory() as work:
        script = Path(work) / "chatty.py"
        script.write_text(CHATTY.replace("LIMIT", str(limit)))
        print("chatty child                 printed    kept in log   child CPU  parent CPU  parent/child (goal <= 10%)")
        for label, extra in (("quiet", []), ("-v, piped to a file", ["-v"])):
            with open(Path(work) / "stream.txt", "wb") as stream:
                result = subprocess.run([sys.executable, "-c", "from lora_codemod.cli import main; main()", "smoke",
                                         str(script), "--no-fix", "--device", "cpu", "--json", *extra],
                                        stdout=subprocess.PIPE, stderr=stream, cwd=work)
            run = json.loads(result.stdout)["runs"][-1]
            child, parent = run["timings"]["child cpu"], run["timings"]["parent cpu"]
            kept = run["output_bytes"] - run["output_cut_bytes"]
            ratio = parent / child if child else float("inf")
            streamed = (Path(work) / "stream.txt").stat().st_size
            results[label] = {"printed": run["output_bytes"], "kept": kept, "child_cpu": child, "parent_cpu": parent,
                              "ratio": round(ratio, 4), "streamed": streamed}
            print(f"{label:22} {run['output_bytes'] / 1e6:8.1f} MB {kept / 1e6:9.2f} MB {child:9.2f} s {parent:9.3f} s  "
                  f"{ratio:6.1%} ({'met' if ratio <= 0.10 else 'NOT met'})"
                  + (f"; streamed {streamed / 1e6:.1f} MB" if extra else ""))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("runs", "overhead", "pair", "chatty"))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="for the overhead pair")
    parser.add_argument("--json", dest="json_path", help="write the overhead pair's figures here")
    args = parser.parse_args()
    if args.only in (None, "runs"):
        smoke_runs(args.repeat)
    if args.only in (None, "overhead"):
        overhead(args.repeat)
    if args.only in (None, "pair"):
        overhead_pair(args.repeat, args.device, args.json_path)
    if args.only in (None, "chatty"):
        chatty()


if __name__ == "__main__":
    main()
