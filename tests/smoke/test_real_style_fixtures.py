"""The trl/peft-style fixtures run unedited under `smoke`, launched as a user would, through the real CLI.

Run as a subprocess so stdout is the process's own: with --json it must be JSON and nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import FIXTURE_SCRIPTS, REPO


def smoke_cli(*args: str, cwd: Path) -> tuple[int, dict, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", "from lora_codemod.cli import main; main()", "smoke", *args], capture_output=True,
                            text=True, env=env, cwd=cwd)
    try:
        parsed = json.loads(result.stdout)  # the whole of stdout: nothing before or after the JSON
    except json.JSONDecodeError as exc:
        raise AssertionError(f"stdout is not JSON alone ({exc}):\n{result.stdout[:2000]}\n{result.stderr[-3000:]}")
    return result.returncode, parsed, result.stderr


def _explain(run: dict) -> str:
    return run["verdict"] + "\n" + "\n".join(run["output_tail"][-40:])


def _kinds(run: dict) -> set[str]:
    return {s["what"] for s in run["standins"]}


def test_sft_hub_fixture_unedited_compare(tmp_path):
    code, parsed, _ = smoke_cli(str(FIXTURE_SCRIPTS / "sft_hub.py"), "--compare", "--device", "cpu", "--json",
                                "--", "--output_dir", "{output_dir}", cwd=tmp_path)
    unpatched, patched = parsed["runs"]
    assert unpatched["status_code"] == 1 and "a full model was saved here" in unpatched["verdict"]
    assert patched["status_code"] == 0, _explain(patched)
    assert code == 0
    for run in (unpatched, patched):
        # Found, not guessed: the script saves to {output_dir}/final_adapter, not lora_adapters.
        assert (run["adapter_dir_from"], run["adapter_dir"]) == ("last LoRA save", run["output_dir"] + "/final_adapter")
        assert {"model", "tokenizer", "dataset", "cpu", "tracker", "hub", "steps"} <= _kinds(run)
        assert [t["steps"] for t in run["training"]] == [2]
    assert patched["verdict"] == "PASS: a valid LoRA adapter in {output_dir}/final_adapter"
    # Each mode ran in its own working directory.
    assert unpatched["work_dir"] != patched["work_dir"]


def test_ddp_gpt2_fixture_unedited_under_torchrun(tmp_path):
    code, parsed, _ = smoke_cli(str(FIXTURE_SCRIPTS / "ddp_gpt2_jsonl.py"), "--nproc", "2", "--device", "cpu",
                                "--json", "--", "--output_dir", "{output_dir}", cwd=tmp_path)
    run = parsed["runs"][0]
    assert code == 0, _explain(run)
    assert run["adapter_writers"] == [0]
    assert run["adapter_dir"] == run["output_dir"] + "/adapter"
    model = [s for s in run["standins"] if s["what"] == "model"]
    assert model and model[0]["ranks"] == [0, 1] and "GPT2LMHeadModel" in model[0]["detail"]
    assert any(s["detail"].startswith("json files {'train': 'data/train.jsonl'}") for s in run["standins"])


def test_nothing_trained_is_not_a_pass(tmp_path):
    # learning rate 0: the script runs, saves a well-formed adapter, and nothing moved.
    code, parsed, _ = smoke_cli(str(FIXTURE_SCRIPTS / "sft_hub.py"), "--device", "cpu", "--max-steps", "3", "--json",
                                "--", "--output_dir", "{output_dir}", "--learning_rate", "0", cwd=tmp_path)
    run = parsed["runs"][0]
    assert code == 1, _explain(run)
    assert [t["steps"] for t in run["training"]] == [3]
    assert run["verdict"] == "FAIL: training: nothing trained: no LoRA weight changed from its initial value in 3 step(s)"


def test_relative_outputs_land_in_the_run_working_directory(tmp_path):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "input.txt").write_text("the user's data")
    script = project / "write.py"
    script.write_text(
        "import os\n"
        "os.makedirs('out', exist_ok=True)\n"
        "open('out/result.txt', 'w').write(open('data/input.txt').read())\n"
    )
    code, parsed, _ = smoke_cli(str(script), "--compare", "--device", "cpu", "--json", cwd=project)
    unpatched, patched = parsed["runs"]
    assert (unpatched["exit_code"], patched["exit_code"]) == (0, 0)  # relative reads found the user's files
    assert unpatched["work_dir"] != patched["work_dir"]
    assert not (project / "out").exists()  # relative writes stayed out of the user's directory
    assert code == 1 and patched["adapter_dir_from"] == "none recorded"


def test_python_option_runs_the_child_with_that_interpreter(tmp_path):
    # Another path to an interpreter (a user's venv is one): the tiny model and the child use it.
    wrapper = tmp_path / "python-wrapper"
    marker = tmp_path / "used"
    wrapper.write_text(f"#!/bin/sh\necho used >> {marker}\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    code, parsed, _ = smoke_cli(str(FIXTURE_SCRIPTS / "train_single.py"), "--no-fix", "--device", "cpu", "--python",
                                str(wrapper), "--json", "--", "--model_path", "{tiny_model}", "--output_dir",
                                "{output_dir}", "--use_lora", cwd=tmp_path)
    run = parsed["runs"][0]
    assert run["command"][0] == str(wrapper)
    assert marker.read_text().count("used") >= 2  # the --python probe, the script (it makes {tiny_model} too)
    assert code == 1 and "a full model was saved here" in run["verdict"]


def test_old_library_versions_through_python(tmp_path):
    """Needs an interpreter with transformers 4.36 / peft 0.7 (see bench/README): LORA_CODEMOD_OLD_PYTHON."""
    old = os.environ.get("LORA_CODEMOD_OLD_PYTHON")
    if not old:
        import pytest

        pytest.skip("LORA_CODEMOD_OLD_PYTHON is not set: the transformers 4.36 / peft 0.7 end is run by bench/old_versions.sh")
    # train_single.py (sft_hub.py uses eval_strategy=, which transformers 4.36 calls evaluation_strategy=)
    # with a hub name: model and tokenizer stand-ins made by transformers 4.36 itself.
    code, parsed, _ = smoke_cli(str(FIXTURE_SCRIPTS / "train_single.py"), "--compare", "--device", "cpu", "--python", old,
                                "--json", "--", "--model_path", "Qwen/Qwen2-0.5B", "--output_dir", "{output_dir}",
                                "--use_lora", cwd=tmp_path)
    unpatched, patched = parsed["runs"]
    assert unpatched["status_code"] == 1 and patched["status_code"] == 0, _explain(patched)
    assert {"model", "tokenizer"} <= _kinds(patched)
