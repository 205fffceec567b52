"""CPU shims, the step cap, trackers and uploads in a real child; each call fails first without them."""

from __future__ import annotations

import pytest

from .child import run_snippet

SHIMS = """
import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, Trainer, TrainingArguments

class Rows(torch.utils.data.Dataset):
    def __len__(self):
        return 64
    def __getitem__(self, index):
        ids = torch.tensor([2, 6 + index % 50, 7, 8, 9, 3])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}

TINY = os.environ["TINY"]
LOAD = dict(torch_dtype=torch.bfloat16, quantization_config=BitsAndBytesConfig(load_in_4bit=True),
            device_map={"": 0}, attn_implementation="flash_attention_2")
ARGS = dict(output_dir="out", num_train_epochs=2, per_device_train_batch_size=4, per_device_eval_batch_size=4,
            bf16=True, report_to="wandb", push_to_hub=True, save_strategy="no", logging_steps=1)

report("control_bf16", fails(lambda: TrainingArguments(**ARGS)))
report("control_cuda", fails(lambda: torch.nn.Linear(2, 2).to("cuda")))
report("control_tensor_cuda", fails(lambda: torch.zeros(2).cuda()))
report("control_set_device", fails(lambda: torch.cuda.set_device(0)))
report("control_load", fails(lambda: AutoModelForCausalLM.from_pretrained(TINY, **LOAD)))
plain = TrainingArguments(output_dir="out", num_train_epochs=2, per_device_train_batch_size=4, report_to="none", save_strategy="no")
control_trainer = Trainer(model=AutoModelForCausalLM.from_pretrained(TINY), args=plain, train_dataset=Rows())
report("control_steps", control_trainer.train().global_step)
report("control_push", fails(lambda: control_trainer.push_to_hub()))

INSTALL()
model = AutoModelForCausalLM.from_pretrained(TINY, **LOAD)
report("load", [str(model.dtype), str(model.device), model.config._attn_implementation,
                getattr(model, "quantization_method", None) or getattr(model, "is_loaded_in_4bit", False)])
report("cuda", [str(torch.nn.Linear(2, 2).to("cuda").weight.device), str(model.cuda().device),
                str(torch.zeros(2).cuda().device), str(torch.zeros(2).to("cuda:0").device),
                str(torch.zeros(2).to(torch.device("cuda"), torch.float16).dtype)])
torch.cuda.set_device(0)
args = TrainingArguments(**ARGS, eval_strategy="steps", eval_steps=1)
report("args", [args.bf16, args.report_to, args.push_to_hub])
trainer = Trainer(model=model, args=args, train_dataset=Rows(), eval_dataset=Rows())
report("eval_rows", len(trainer.eval_dataset))
output = trainer.train()
report("steps", output.global_step)
report("push", trainer.push_to_hub())
report("model_push", model.push_to_hub("me/model"))
"""


@pytest.fixture(scope="module")
def shims(tmp_path_factory, tiny_model):
    return run_snippet(SHIMS, tmp_path_factory.mktemp("shims"), env={"TINY": str(tiny_model)})


def test_controls_fail_on_a_cpu_without_the_shims(shims):
    results, _ = shims
    assert results["control_bf16"] == "ValueError"  # "Your setup doesn't support bf16/gpu"
    assert results["control_cuda"] and results["control_tensor_cuda"] and results["control_set_device"]
    assert results["control_load"]  # bitsandbytes / flash-attn / a GPU device map
    assert results["control_steps"] == 32  # two epochs of 64 rows, 4 a batch: no cap
    assert results["control_push"]  # offline: the upload fails


def test_model_load_drops_quantization_device_map_flash_attention_and_half_precision(shims):
    results, standins = shims
    dtype, device, attention, quantized = results["load"]
    assert (dtype, device, quantized) == ("torch.float32", "cpu", False)
    assert "flash" not in str(attention)
    details = {s["detail"] for s in standins if s["what"] == "cpu"}
    assert {"device_map={'': 0} -> CPU", "torch_dtype=bfloat16 -> float32"} <= details
    # Neither package is installed here: listed as such, on the CPU as on a GPU.
    missing = {s["detail"] for s in standins if s["what"] == "missing"}
    assert {"attn_implementation='flash_attention_2' -> the default attention (flash-attn is not installed)",
            "4-bit/8-bit quantization dropped (bitsandbytes is not installed): full-precision weights"} <= missing


def test_cuda_placement_goes_to_the_cpu(shims):
    results, standins = shims
    assert results["cuda"] == ["cpu", "cpu", "cpu", "cpu", "torch.float16"]
    details = {s["detail"] for s in standins}
    assert {"model.cuda() -> CPU", "tensor.cuda() -> CPU", "torch.cuda.set_device() -> ignored"} <= details


def test_mixed_precision_trackers_and_uploads_are_off(shims):
    results, standins = shims
    bf16, report_to, push = results["args"]
    assert bf16 is False and push is False and report_to in ([], ["none"], "none")
    assert results["push"] is None and results["model_push"] is None
    details = {s["detail"] for s in standins}
    assert "report_to='wandb' -> none" in details
    assert {"Trainer.push_to_hub() -> not uploaded", "push_to_hub() -> not uploaded"} <= details


def test_step_cap_stops_the_trainer_and_bounds_evaluation(shims):
    results, standins = shims
    assert results["steps"] == 2
    assert results["eval_rows"] == 8  # 2 steps x 4 rows an evaluation batch
    assert "num_train_epochs=2 -> 2 steps (--max-steps)" in {s["detail"] for s in standins}
