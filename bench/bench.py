"""Benchmark lora-codemod against its floor and its peers, in one run.

    .venv/bin/python bench/bench.py                 # everything (libcst's runner takes ~5 min)
    .venv/bin/python bench/bench.py --skip-libcst   # a quick run without it
    .venv/bin/python bench/bench.py --runs 5 --out bench/RESULTS.md

Trees (copies of the `.py` files of installed packages, made in a temporary directory):
T1 = transformers; T2 = transformers + torch + peft + accelerate. Timed, each as a fresh process,
runs interleaved, median reported:

- `lora-codemod fix --check --no-cache T` (the tool as a user runs it, default -j, cold), and a
  second run over T2 with the result cache (warm);
- the floor: a plain-Python walk that reads every `.py` file and tests for a substring;
- `python -m libcst.tool codemod -j <cores> --no-format` with a do-nothing
  `VisitorBasedCodemodCommand` (bench/noop_codemod.py: lora-codemod has no libcst command yet),
  on T1 only and once, as it takes minutes;
- `ruff check --no-cache --select E9 T` when ruff is installed (a Rust tool that parses all);
- one large real module (T2's distributed_test.py, 460 KB) against `import libcst` + parsing it;
- `--repos DIR`: whole repositories as users have them, against `ruff check --select E9`;
- single files: a clean script (bench/clean_train.py) and one that needs the fix
  (fixtures/scripts/train_single.py), against `python -c pass`, `python -c "import libcst"` and
  `import libcst` + parsing that file.

Peak RSS is the largest process's (GNU time's %M, which covers the pool's workers too); for
`fix --check T2` the sum over the whole process tree is sampled as well. The results are printed
and written as a Markdown table (--out) for the README.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PYTHON = sys.executable

# The largest real module of T2 that the analysis reads (460 KB, with LC003 findings).
LARGE = Path("torch/testing/_internal/distributed/distributed_test.py")

FLOOR = """
import os, sys
hits = 0
for root in sys.argv[1:]:
    for dirpath, dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(dirpath, name), "rb") as handle:
                    hits += b"save_pretrained" in handle.read()
print(hits)
"""


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"bench: {name} is not installed here (pip install -e '.[smoke]')")
    return Path(list(spec.submodule_search_locations)[0])


def copy_py(src: Path, dst: Path) -> int:
    count = 0
    for dirpath, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                rel = Path(dirpath).relative_to(src)
                (dst / rel).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(dirpath) / name, dst / rel / name)
                count += 1
    return count


def lora_codemod_command() -> list[str]:
    script = Path(PYTHON).parent / "lora-codemod"
    return [str(script)] if script.exists() else [PYTHON, "-m", "lora_codemod"]


GNU_TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None


def run_once(command: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB (largest process of the tree) and the exit code.

    The RSS comes from GNU time when it is there: a child forked from this (larger) Python
    process would inherit its high-water mark across exec. The wall time is this process's.
    """
    with tempfile.NamedTemporaryFile("r") as rss_file:
        prefix = [GNU_TIME, "-f", "%M", "-o", rss_file.name] if GNU_TIME else []
        start = time.perf_counter()
        proc = subprocess.Popen([*prefix, *command], cwd=cwd, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        try:
            rss_kb = float(rss_file.read().strip().splitlines()[-1]) if GNU_TIME else usage.ru_maxrss
        except (ValueError, IndexError):
            rss_kb = usage.ru_maxrss
    return wall, rss_kb / 1024, code


def tree_rss_peak(command: list[str], cwd: Path) -> float:
    """Peak of the summed RSS of a process and all its descendants, sampled every 5 ms (MB)."""
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            parents: dict[int, int] = {}
            rss: dict[int, int] = {}
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/stat") as handle:
                        fields = handle.read().rsplit(")", 1)[1].split()
                    parents[int(entry)] = int(fields[1])
                    rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
                except (OSError, IndexError, ValueError):
                    continue
            tree, frontier = {proc.pid}, [proc.pid]
            while frontier:
                pid = frontier.pop()
                for child, parent in parents.items():
                    if parent == pid and child not in tree:
                        tree.add(child)
                        frontier.append(child)
            peak = max(peak, sum(rss.get(pid, 0) for pid in tree) / 2**20)
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    proc.wait()
    done.set()
    thread.join()
    return peak


class Bench:
    def __init__(self, runs: int):
        self.runs = runs
        self.results: dict[str, dict] = {}

    def measure(self, commands: dict[str, tuple[list[str], Path]], runs: int | None = None) -> None:
        """Runs every command `runs` times, interleaved (so that a noisy neighbour hurts all)."""
        samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in commands}
        for command, cwd in commands.values():  # one warm-up each: the page cache
            run_once(command, cwd)
        for _ in range(runs or self.runs):
            for name, (command, cwd) in commands.items():
                samples[name].append(run_once(command, cwd))
        for name, values in samples.items():
            self.results[name] = {
                "wall": statistics.median(v[0] for v in values),
                "rss": max(v[1] for v in values),
                "exit": values[-1][2],
                "runs": len(values),
                "command": " ".join(commands[name][0]),
            }
            print(f"  {name:<40} {self.results[name]['wall']:8.3f} s  {self.results[name]['rss']:7.1f} MB  "
                  f"exit {self.results[name]['exit']}", flush=True)

    def wall(self, name: str) -> float:
        return self.results[name]["wall"]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
        mem_text = f", {mem:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        mem_text = ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cores} cores ({cpu}){mem_text}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command (median; default 5)")
    parser.add_argument("--skip-libcst", action="store_true", help="do not run libcst's runner (~5 min on T1)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="Markdown table (default bench/RESULTS.md)")
    parser.add_argument("--repos", type=Path, help="a directory of whole repositories (e.g. fetched LLaVA, trl, "
                        "FastChat, open-instruct, LMFlow, peft) to compare with ruff E9; the row is left out without it")
    parser.add_argument("--large", type=Path, help=f"the large real module (default: T2's {LARGE})")
    args = parser.parse_args()

    import libcst  # noqa: F401 - fail early: the comparison needs it

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    tool = lora_codemod_command()
    bench = Bench(args.runs)
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="lora-codemod-bench-") as tmp:
        work = Path(tmp)
        t1, t2 = work / "T1", work / "T2"
        counts = {}
        for tree, names in ((t1, ["transformers"]), (t2, ["transformers", "torch", "peft", "accelerate"])):
            counts[tree.name] = sum(copy_py(package_dir(name), tree / name) for name in names)
        size = {t.name: sum(p.stat().st_size for p in t.rglob("*.py")) / 1e6 for t in (t1, t2)}
        print(f"T1: {counts['T1']} files, {size['T1']:.0f} MB; T2: {counts['T2']} files, {size['T2']:.0f} MB "
              f"(in {work})", flush=True)
        clean = work / "clean_train.py"
        shutil.copyfile(HERE / "clean_train.py", clean)
        needs_fix = work / "train_single.py"
        shutil.copyfile(REPO / "fixtures" / "scripts" / "train_single.py", needs_fix)

        print("trees:", flush=True)
        # Cold rows read and write no cache; the warm row is a second run over the same tree, its
        # cache filled by the warm-up run (in work/.lora_codemod_cache).
        trees = {
            "floor T1": ([PYTHON, "-c", FLOOR, "T1"], work),
            "fix --check T1": ([*tool, "fix", "--check", "--no-cache", "T1"], work),
            "floor T2": ([PYTHON, "-c", FLOOR, "T2"], work),
            "fix --check T2": ([*tool, "fix", "--check", "--no-cache", "T2"], work),
            "fix --check T2, warm (second run, cache)": ([*tool, "fix", "--check", "T2"], work),
            "fix --check -j 1 T2": ([*tool, "fix", "--check", "--no-cache", "-j", "1", "T2"], work),
        }
        ruff = shutil.which("ruff") or (str(Path(PYTHON).parent / "ruff") if (Path(PYTHON).parent / "ruff").exists() else None)
        if ruff:
            trees["ruff E9 T1"] = ([ruff, "check", "--no-cache", "--select", "E9", "--quiet", "T1"], work)
            trees["ruff E9 T2"] = ([ruff, "check", "--no-cache", "--select", "E9", "--quiet", "T2"], work)
        if args.repos is not None:
            repos = args.repos.resolve()
            trees["floor repos"] = ([PYTHON, "-c", FLOOR, str(repos)], work)
            trees["fix --check repos"] = ([*tool, "fix", "--check", "--no-cache", "--isolated", str(repos)], work)
            if ruff:
                trees["ruff E9 repos"] = ([ruff, "check", "--no-cache", "--isolated", "--select", "E9", "--quiet",
                                           str(repos)], work)
        bench.measure(trees)
        tree_peak = tree_rss_peak([*tool, "fix", "--check", "--no-cache", "T2"], work)
        print(f"  fix --check T2: process tree peak RSS (sampled) {tree_peak:.1f} MB", flush=True)

        print("single files:", flush=True)
        parse = f"import libcst; libcst.parse_module(open({str(needs_fix)!r}, 'rb').read())"
        large = t2 / LARGE if args.large is None else args.large.resolve()
        parse_large = f"import libcst; libcst.parse_module(open({str(large)!r}, 'rb').read())"
        bench.measure({
            "python -c pass": ([PYTHON, "-c", "pass"], work),
            "fix --check clean file": ([*tool, "fix", "--check", "--no-cache", str(clean)], work),
            "python -c 'import libcst'": ([PYTHON, "-c", "import libcst"], work),
            "import libcst + parse the file": ([PYTHON, "-c", parse], work),
            "fix --check file needing the fix": ([*tool, "fix", "--check", "--no-cache", str(needs_fix)], work),
        }, runs=max(args.runs, 11))
        print(f"one large module ({large.name}, {large.stat().st_size / 1e3:.0f} KB):", flush=True)
        bench.measure({
            "import libcst + parse the large module": ([PYTHON, "-c", parse_large], work),
            "fix --check the large module": ([*tool, "fix", "--check", "--no-cache", str(large)], work),
        })

        if not args.skip_libcst:
            print("libcst's runner on T1 (minutes):", flush=True)
            subprocess.run([PYTHON, "-m", "libcst.tool", "initialize", str(work)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
            command = [PYTHON, "-m", "libcst.tool", "codemod", "-x", "noop_codemod.NoopCommand", "-j", str(cores),
                       "--no-format", "--hide-progress", "T1"]
            wall, rss, code = run_once(command, work, env=env)
            bench.results["libcst runner T1 (no-op command)"] = {
                "wall": wall, "rss": rss, "exit": code, "runs": 1, "command": " ".join(command)}
            print(f"  {'libcst runner T1 (no-op command)':<40} {wall:8.3f} s  {rss:7.1f} MB  exit {code}", flush=True)

    load = (load_start, os.getloadavg()[0]) if load_start is not None else None
    write_report(bench, args, counts, size, tree_peak, cores, load)


def write_report(bench: Bench, args, counts, size, tree_peak: float, cores: int, load) -> None:
    r = bench.results
    goals = []

    def goal(text: str, value: float, limit: float, unit: str, ok: bool) -> None:
        goals.append((text, f"{value:.2f}{unit}", f"{limit:g}{unit}", "met" if ok else "NOT met"))

    large = bench.wall("fix --check the large module") / bench.wall("import libcst + parse the large module")
    goal("one large module: `fix --check` vs `import libcst` + parse", large, 2, "x", large <= 2)
    if "ruff E9 repos" in r:
        repos = bench.wall("fix --check repos") / bench.wall("ruff E9 repos")
        goal("whole repositories: `fix --check` vs `ruff check --select E9`", repos, 5, "x", repos <= 5)
    ratio = bench.wall("fix --check T2") / bench.wall("floor T2")
    goal("`fix --check` T2, cold, vs the plain-Python floor", ratio, 10, "x", ratio <= 10)
    warm = bench.wall("fix --check T2, warm (second run, cache)") / bench.wall("floor T2")
    goal("`fix --check` T2, warm (cache), vs the floor", warm, 3, "x", warm <= 3)
    parallel = bench.wall("fix --check -j 1 T2") / bench.wall("fix --check T2")
    goal(f"`-j` default ({cores} cores) vs `-j 1` on T2 (faster by)", parallel, 1.7, "x", parallel >= 1.7)
    if "libcst runner T1 (no-op command)" in r:
        speedup = bench.wall("libcst runner T1 (no-op command)") / bench.wall("fix --check T1")
        goals.append(("libcst's runner T1 vs `fix --check` T1 (faster by)", f"{speedup:.0f}x", "≥ 100x",
                      "met" if speedup >= 100 else "NOT met"))
    rss = r["fix --check T2"]["rss"]
    goal("peak RSS, `fix --check` T2 (largest process)", rss, 150, " MB", rss <= 150)
    goal("peak RSS, `fix --check` T2 (whole process tree, sampled)", tree_peak, 150, " MB", tree_peak <= 150)
    clean = bench.wall("fix --check clean file") / bench.wall("python -c pass")
    goal("clean single file vs `python -c pass`", clean, 3, "x", clean <= 3)
    fixing = bench.wall("fix --check file needing the fix") / bench.wall("import libcst + parse the file")
    goal("file needing the fix vs `import libcst` + parse", fixing, 1.5, "x", fixing <= 1.5)

    date = datetime.date.today().isoformat()
    lines = [
        f"Measured {date} on {machine()}; T1 = transformers ({counts['T1']} files, {size['T1']:.0f} MB), "
        f"T2 = T1 + torch + peft + accelerate ({counts['T2']} files, {size['T2']:.0f} MB); median of "
        f"{args.runs} runs (single files: {max(args.runs, 11)}) after a warm-up, page cache warm; "
        "libcst's runner once, with a do-nothing `VisitorBasedCodemodCommand` (bench/noop_codemod.py) standing "
        "in for a codemod command (ours, lora_codemod.commands.codemod.LoraCodemod, does real work: the no-op is the runner's floor)."
        + (f" Load average {load[0]:.1f} at the start, {load[1]:.1f} at the end (on {cores} cores: other work "
           "on the machine slows every row)." if load else ""),
        "",
        "| what | wall | peak RSS |",
        "|---|---:|---:|",
    ]
    for name, value in r.items():
        lines.append(f"| {name} | {value['wall']:.3f} s | {value['rss']:.0f} MB |")
    lines += ["", "| goal | measured | limit | |", "|---|---:|---:|---|"]
    lines += [f"| {g[0]} | {g[1]} | {g[2]} | {g[3]} |" for g in goals]
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    args.out.write_text(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
