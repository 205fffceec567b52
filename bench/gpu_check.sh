#!/usr/bin/env bash
# The device check: `lora-codemod smoke` on a lent GPU machine, in one go (under 6 minutes on a
# warm H200). Prints one line per run and writes every figure to $OUT/gpu_check.json ($OUT: as the
# device tool sets it, else a new temporary directory).
#
#   bash bench/gpu_check.sh                # from the repository root, on the GPU machine
#   DEVICE=cpu JOBS=2 bash bench/gpu_check.sh   # the same runs on a CPU (to check the script itself)
#
# The machine has torch, transformers, peft and accelerate but no network. What it lacks is
# installed from wheels carried in $WHEELS (default bench/wheels, not committed). Download them
# beforehand, on any machine with network, for CPython 3.12 on manylinux x86_64:
#
#   pip download --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
#       -d bench/wheels libcst pyyaml click rich markdown-it-py mdurl pygments pathspec \
#       datasets dill multiprocess fsspec xxhash trl
#
# Runs (CUDA unless DEVICE=cpu), each with its verdict:
#   train_single.py --compare                  unpatched fails (a full model), patched passes
#   train_ddp.py --nproc 1                     a distributed script on one rank
#   train_ddp.py --nproc 2 --compare           two ranks sharing one GPU (gloo): the rank race, fixed
#   train_plain_wrapper_lora.py --compare --unsafe-fixes       the plain wrapper (issue 13)
#   train_plain_wrapper_lora_ddp.py --nproc 2 --compare --unsafe-fixes
#   sft_hub.py, ddp_gpt2_jsonl.py --nproc 2, gpu_repo_lora.py --bf16 True --q_lora True --flash_attn True
#   the overhead pair (bench/smoke_bench.py --only pair): smoke vs a plain run, goal <= 1.3x
# The smoke runs go JOBS at a time (default 4); the overhead pair runs alone afterwards.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
JOBS="${JOBS:-4}"
WHEELS="${WHEELS:-bench/wheels}"
OUT="${OUT:-$(mktemp -d -t lora-codemod-gpu-check-XXXXXX)}"  # the device tool sets OUT
RUN_TIMEOUT="${RUN_TIMEOUT:-240}"
mkdir -p "$OUT/runs"
OUT="$(cd "$OUT" && pwd)"  # absolute: the runs work in their own directories
if [[ "$PY" == */* ]]; then PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"; fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export LORA_CODEMOD_CACHE_DIR="${LORA_CODEMOD_CACHE_DIR:-$OUT/cache}"
started=$(date +%s)

# ---- what the machine lacks, from the carried wheels
missing=()
for pair in libcst:libcst click:click rich:rich pathspec:pathspec datasets:datasets trl:trl; do
  module="${pair%%:*}"; package="${pair##*:}"
  "$PY" -c "import $module" 2>/dev/null || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ -d "$WHEELS" ]; then
    echo "installing from $WHEELS: ${missing[*]}"
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" "${missing[@]}" 2>&1 | tail -3
  else
    echo "missing ${missing[*]} and no wheel directory $WHEELS (see this script's header)"
  fi
fi

"$PY" - "$OUT/environment.json" "$DEVICE" <<'EOF'
import datetime, json, platform, subprocess, sys
from importlib import metadata
def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
facts = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
         "python": platform.python_version(), "device": sys.argv[2]}
for name in ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "flash-attn", "bitsandbytes", "deepspeed"):
    facts[name] = version(name)
try:
    import torch
    facts["cuda"] = torch.version.cuda
    facts["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    facts["bf16"] = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
except Exception as exc:
    facts["torch_error"] = str(exc)
json.dump(facts, open(sys.argv[1], "w"), indent=2)
print("environment: " + ", ".join(f"{k} {v}" for k, v in facts.items() if v not in (None, [])))
EOF

TINY=(-- --model_path "{tiny_model}" --output_dir "{output_dir}" --use_lora --max_steps 2)
RUNS=(
  "single_compare|fixtures/scripts/train_single.py|--compare|${TINY[*]}"
  "ddp_nproc1|fixtures/scripts/train_ddp.py|--nproc 1|${TINY[*]}"
  "ddp_nproc2_compare|fixtures/scripts/train_ddp.py|--nproc 2 --compare|${TINY[*]}"
  "plain_wrapper_compare|fixtures/scripts/train_plain_wrapper_lora.py|--compare --unsafe-fixes|${TINY[*]}"
  "plain_wrapper_ddp_nproc2|fixtures/scripts/train_plain_wrapper_lora_ddp.py|--nproc 2 --compare --unsafe-fixes|${TINY[*]}"
  "sft_hub|fixtures/scripts/sft_hub.py||-- --output_dir {output_dir}"
  "ddp_gpt2_jsonl_nproc2|fixtures/scripts/ddp_gpt2_jsonl.py|--nproc 2|-- --output_dir {output_dir}"
  "gpu_repo_lora|fixtures/scripts/gpu_repo_lora.py||-- --output_dir {output_dir} --bf16 True --q_lora True --flash_attn True --num_train_epochs 1 --per_device_train_batch_size 2 --logging_steps 1 --save_strategy no"
)

run_one() {
  local name="$1" script="$2" flags="$3" args="$4"
  local work="$OUT/runs/$name"
  mkdir -p "$work"
  local t0; t0=$(date +%s%N)
  # shellcheck disable=SC2086  # flags and args are word lists on purpose
  (cd "$work" && timeout $((RUN_TIMEOUT + 30)) "$PY" -m lora_codemod smoke "$REPO/$script" --device "$DEVICE" \
      --timeout "$RUN_TIMEOUT" --json $flags $args >"smoke.json" 2>"smoke.err")
  local code=$?
  echo "$code $(( ($(date +%s%N) - t0) / 1000000 ))" >"$work/status"  # exit code, milliseconds
}

active=0
for entry in "${RUNS[@]}"; do
  IFS='|' read -r name script flags args <<<"$entry"
  run_one "$name" "$script" "$flags" "$args" &
  active=$((active + 1))
  if [ "$active" -ge "$JOBS" ]; then
    wait -n
    active=$((active - 1))
  fi
done
wait

# ---- the overhead pair, alone on the machine
"$PY" bench/smoke_bench.py --only pair --device "$DEVICE" --repeat "${PAIR_REPEAT:-2}" --json "$OUT/overhead_pair.json" \
  >"$OUT/overhead_pair.txt" 2>"$OUT/overhead_pair.err"
pair_code=$?

"$PY" - "$OUT" "${RUNS[@]}" <<'EOF'
import json, os, sys
out, entries = sys.argv[1], sys.argv[2:]
summary = {"environment": json.load(open(os.path.join(out, "environment.json"))), "runs": []}
for entry in entries:
    name, script, flags, _ = entry.split("|", 3)
    work = os.path.join(out, "runs", name)
    code, millis = (open(os.path.join(work, "status")).read().split() + ["?", "0"])[:2]
    wall = round(int(millis) / 1000, 1)
    try:
        parsed = json.load(open(os.path.join(work, "smoke.json")))
    except (OSError, ValueError):
        err = open(os.path.join(work, "smoke.err")).read().strip().splitlines()
        print(f"{name:26} exit {code:>3}  {wall:6.1f} s  no JSON: {(err or ['no output'])[-1][:140]}")
        summary["runs"].append({"name": name, "script": script, "flags": flags, "exit": code, "wall_s": wall})
        continue
    for run in parsed["runs"]:
        print(f"{name:26} {run['mode']:9} nproc {run['processes']} exit {run['status_code']}  "
              f"{run['wall_seconds']:6.1f} s  {run['verdict'][:150]}")
        summary["runs"].append({"name": name, "script": script, "flags": flags, "mode": run["mode"],
                                "device": run["device"], "processes": run["processes"], "backend": run["backend"],
                                "status_code": run["status_code"], "verdict": run["verdict"],
                                "wall_s": run["wall_seconds"], "timings": run.get("timings"),
                                "standins": [f"{s['what']}: {s['detail']}" for s in run["standins"]]})
    summary["runs"][-1]["command_exit"] = code
    summary["runs"][-1]["command_wall_s"] = wall
try:
    pair = json.load(open(os.path.join(out, "overhead_pair.json")))
    summary["overhead_pair"] = pair
    print(f"{'overhead_pair':26} {pair['device']:9} plain {pair['plain_s']} s, smoke {pair['smoke_s']} s: "
          f"{pair['ratio']}x (goal <= {pair['goal']}x, {'met' if pair['met'] else 'NOT met'})")
except (OSError, ValueError):
    print(f"{'overhead_pair':26} failed: " + open(os.path.join(out, "overhead_pair.err")).read().strip()[-200:])
json.dump(summary, open(os.path.join(out, "gpu_check.json"), "w"), indent=2)
EOF
echo "gpu_check: $(( $(date +%s) - started )) s in all; figures in $OUT/gpu_check.json"
