"""End-to-end `smoke` runs: real children, real torch/transformers/peft, CPU, torchrun with gloo.

Each heavy case runs once. The `--compare` cases need the real rewrite (lora_codemod.engine):
they apply it in memory and expect the patched run to pass.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from lora_codemod.smoke.commands import smoke
from lora_codemod.smoke.child.verify import FULL_MODEL_MESSAGE

from .conftest import SAVE_BLOCK, check, copy_fixture, run_cli, training_args

UNWRAP_SNIPPET_ON_WRAPPER = (
    """        lora_output_dir = os.path.join(args.output_dir, "lora_adapters")
        model.model.text_model.save_pretrained(lora_output_dir)
""",
    """        lora_output_dir = os.path.join(args.output_dir, "lora_adapters")
        # Use trainer.model instead of original model for LoRA saving
        model_to_save = trainer.model.module if hasattr(trainer.model, 'module') else trainer.model
        model_to_save.save_pretrained(lora_output_dir)
""",
)

# What the rewrite makes of train_ddp.py's save (spec LC001 + LC002), written out by hand so the
# runner's distributed path is tested on its own; plus a Trainer.save_model() on every rank, as
# real scripts do, to check how collective saves are recorded.
DDP_HAND_PATCHED = """    trainer.save_model()
    if trainer.is_world_process_zero():
        if args.use_lora:
            model_to_save = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
            lora_output_dir = os.path.join(args.output_dir, "lora_adapters")
            model_to_save.save_pretrained(lora_output_dir)
            print(f"LoRA adapters saved to {lora_output_dir}")
"""


def _only_run(parsed: dict) -> dict:
    assert len(parsed["runs"]) == 1
    return parsed["runs"][0]


def _explain(run: dict) -> str:
    """The verdict, plus the script's last output lines when it crashed."""
    tail = "\n".join(run["output_tail"][-60:]) if run["exit_code"] != 0 else ""
    return f"{run['verdict']}\n{tail}"


def _writes(run: dict) -> list[tuple[int, str, bool]]:
    return [(s["rank"], s["class"].rsplit(".", 1)[-1], s["writes"]) for s in run["saves"] if s["via"] is None]


def test_script_runs_as_itself_and_its_file_is_never_written(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "helper.py").write_text("VALUE = 'sibling import works'\n")
    script = project / "train.py"
    script.write_text(
        "import json, os, sys\n"
        "import helper\n"
        "out = sys.argv[sys.argv.index('--output_dir') + 1]\n"
        "with open(os.path.join(out, 'context.json'), 'w') as f:\n"
        "    json.dump({'file': __file__, 'argv0': sys.argv[0], 'path0': sys.path[0], 'name': __name__,\n"
        "               'helper': helper.VALUE, 'args': sys.argv[1:]}, f)\n"
    )
    before = (script.read_bytes(), script.stat().st_mtime_ns)
    code, parsed, stderr = run_cli(smoke, [str(script), "--device", "cpu", "--keep", "--json",
                                      "--", "--output_dir", "{output_dir}", "--flag", '{"json": 1}'])
    run = _only_run(parsed)
    assert code == 1, run["verdict"]  # it ran, but saved no adapter
    assert stderr == ""  # piped: no live status line, no streamed output
    assert run["adapter_dir_from"] == "none recorded"
    assert run["verdict"].startswith("FAIL: adapter_config.json")
    context = json.loads((Path(run["output_dir"]) / "context.json").read_text())
    assert context == {
        "file": str(script), "argv0": str(script), "path0": str(project), "name": "__main__",
        "helper": "sibling import works", "args": ["--output_dir", run["output_dir"], "--flag", '{"json": 1}'],
    }
    assert (script.read_bytes(), script.stat().st_mtime_ns) == before
    assert sorted(p.name for p in project.iterdir() if p.name != "__pycache__") == ["helper.py", "train.py"]
    shutil.rmtree(parsed["run_dir"])


def test_timeout_stops_the_whole_process_tree(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    script = tmp_path / "hang.py"
    script.write_text(
        "import subprocess, sys, time\n"
        # A grandchild in its own session, like torchrun's workers: a plain killpg would miss it.
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "print('waiting forever', flush=True)\n"
        "time.sleep(120)\n"
    )
    started = time.monotonic()
    code, parsed, _ = run_cli(smoke, [str(script), "--no-fix", "--device", "cpu", "--timeout", "3", "--json"])
    run = _only_run(parsed)
    assert code == 2
    assert run["timed_out"] is True and run["verdict"].startswith("TIMEOUT")
    assert "waiting forever" in run["output_tail"]
    assert time.monotonic() - started < 60  # it did not wait for the 120 s sleeps
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{grandchild}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{grandchild}").exists(), "the grandchild survived the timeout"


def test_unwrap_snippet_raises_attribute_error_on_a_wrapper(tmp_path, tiny_model):
    script = copy_fixture("train_wrapper.py", tmp_path, replace=UNWRAP_SNIPPET_ON_WRAPPER)
    code, parsed, _ = run_cli(smoke, [str(script), "--no-fix", "--device", "cpu", "--json", *training_args(str(tiny_model))])
    run = _only_run(parsed)
    assert code == 2, run["verdict"]
    assert run["exception"]["type"] == "AttributeError"
    assert run["exception"]["message"] == "'ModelWrapper' object has no attribute 'save_pretrained'"
    assert run["exception"]["where"].startswith(f"{script}:")
    assert run["verdict"].startswith("CRASHED: the script exited with code 1: AttributeError")


def test_guarded_ddp_save_is_written_by_rank_zero_alone(tmp_path, tiny_model):
    script = copy_fixture("train_ddp.py", tmp_path, replace=(SAVE_BLOCK, DDP_HAND_PATCHED))
    code, parsed, _ = run_cli(smoke, [str(script), "--no-fix", "--device", "cpu", "--nproc", "2", "--json",
                                      *training_args(str(tiny_model))])
    run = _only_run(parsed)
    assert code == 0, _explain(run)
    assert (run["processes"], run["backend"]) == (2, "gloo")
    assert sorted(g["rank"] for g in run["process_groups"]) == [0, 1]
    saves = [(s["rank"], s["api"], s["via"], s["writes"], s["dir"]) for s in run["saves"]]
    output_dir, adapter_dir = run["output_dir"], run["output_dir"] + "/lora_adapters"
    assert saves == [
        (0, "save_model", None, True, output_dir),
        (0, "save_pretrained", "save_model", True, output_dir),  # Trainer._save, inside save_model
        (0, "save_pretrained", None, True, adapter_dir),
        (1, "save_model", None, False, output_dir),  # not the main process: writes nothing
    ]
    assert run["adapter_writers"] == [0]
    assert [c["name"] for c in run["checks"] if c["status"] == "fail"] == []
    assert check(run, "lora_B trained")["status"] == "pass"
    assert run["verdict"] == "PASS: a valid LoRA adapter in {output_dir}/lora_adapters, written by rank 0 alone"


# ---- with the real rewrite (lora_codemod.engine.transform_source) --------------------------------


def _compare(script: Path, extra: list[str], model_arg: str) -> tuple[int, dict, dict]:
    code, parsed, _ = run_cli(smoke, [str(script), "--compare", "--device", "cpu", "--json", *extra, *training_args(model_arg)])
    unpatched, patched = parsed["runs"]
    assert (unpatched["mode"], patched["mode"]) == ("unpatched", "patched")
    return code, unpatched, patched


def _finding_codes(run: dict) -> list[str]:
    return sorted({f["code"] for f in run["fix"]["findings"] if f["status"] == "fixed"})


def test_single_process_fixture_compare(tmp_path, tiny_model, environment_cache):
    script = copy_fixture("train_single.py", tmp_path)
    before = script.read_bytes()
    # {tiny_model} here: the run copies the environment's tiny model (made on first use).
    code, unpatched, patched = _compare(script, ["--base-model", "{tiny_model}"], "{tiny_model}")
    assert [p.name.split("-transformers")[0] for p in environment_cache.iterdir() if p.name.startswith("tiny")] == [
        "tiny-llama"]
    assert [s["detail"] for s in patched["standins"] if s["what"] == "model"] == [
        "{tiny_model} -> a tiny Llama (random weights) and the tiny tokenizer, from this environment's cache"]
    for run in (unpatched, patched):  # the child verified (with the base model): the parent did not
        assert "verify" in run["timings"] and "verify (parent)" not in run["timings"], run["timings"]
    assert check(unpatched, "adapter, not full model")["detail"] == FULL_MODEL_MESSAGE
    assert unpatched["status_code"] == 1
    assert _writes(unpatched) == [(0, "LlamaForCausalLM", True)]
    assert _finding_codes(patched) == ["LC001"]
    assert patched["status_code"] == 0, _explain(patched)
    assert _writes(patched) == [(0, "PeftModelForCausalLM", True)]
    assert check(patched, "loads on base model")["status"] == "pass"
    assert code == 0
    assert script.read_bytes() == before


def test_distributed_fixture_compare_under_torchrun(tmp_path, tiny_model):
    script = copy_fixture("train_ddp.py", tmp_path)
    code, unpatched, patched = _compare(script, ["--nproc", "2"], str(tiny_model))
    assert unpatched["status_code"] == 1
    assert _writes(unpatched) == [(0, "LlamaForCausalLM", True), (1, "LlamaForCausalLM", True)]
    assert check(unpatched, "one rank writes the adapter")["status"] == "fail"
    assert _finding_codes(patched) == ["LC001", "LC002"]
    assert patched["status_code"] == 0, _explain(patched)
    assert _writes(patched) == [(0, "PeftModelForCausalLM", True)]
    assert code == 0


def test_wrapper_fixture_passes_before_and_after_the_fix(tmp_path, tiny_model):
    script = copy_fixture("train_wrapper.py", tmp_path)
    code, unpatched, patched = _compare(script, [], str(tiny_model))
    assert unpatched["status_code"] == 0, _explain(unpatched)
    # The chain survives the rewrite: the PeftModel inside the wrapper is what gets saved.
    # (Which rule rewrites it is the rules' business: LC001, or LC004 since the wrapper rule.)
    assert patched["fix"]["changed"] and _finding_codes(patched)
    assert patched["status_code"] == 0, _explain(patched)
    assert _writes(patched) == [(0, "PeftModelForCausalLM", True)]
    assert code == 0
