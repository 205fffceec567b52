"""What a finding tells the user: why this save is wrong, in the words of its case."""

from __future__ import annotations

import pytest

from lora_codemod.engine import transform_source

CASES = {
    "ancestor": (
        b"peft_model = get_peft_model(model, c)\ntrainer = Trainer(model=peft_model)\n"
        b"if args.use_lora:\n    model.save_pretrained(d)\n",
        "is the base model that trainer's PEFT model was wrapped from: this writes a full model",
    ),
    "sft_peft_config": (
        b"trainer = SFTTrainer(model=model, peft_config=c)\nif args.use_lora:\n    model.save_pretrained(d)\n",
        "wraps it in a PeftModel itself (peft_config=)",
    ),
    "same_object": (
        b"model = get_peft_model(model, c)\ntrainer = Trainer(model=model)\nif args.use_lora:\n    model.save_pretrained(d)\n",
        "is the model trainer trains, so this save works today",
    ),
    "distributed": (
        b"import torch.distributed as dist\ntrainer = Trainer(model=m)\nif args.use_lora:\n    trainer.model.save_pretrained(d)\n",
        "every rank writes the adapter (distributed script: imports torch.distributed)",
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_message_names_the_cause(name):
    source, expected = CASES[name]
    result = transform_source(source, "t.py")
    assert any(expected in f.message for f in result.findings), [f.format() for f in result.findings]


def _reasons(source: bytes) -> list[tuple[str, str]]:
    return [(f.code, f.reason) for f in transform_source(source, "train.py").findings]


def test_lc003_names_the_if_inside_the_guard_that_holds_the_call():
    source = (b"trainer = Trainer(model=m)\nif trainer.is_world_process_zero():\n    if args.use_lora:\n"
              b"        trainer.model.save_pretrained(d)\n    else:\n        trainer.save_model()\n")
    assert ("LC003", "it sits in the `else` of `if args.use_lora:` inside the guard") in _reasons(source)
    control = source.replace(b"    if args.use_lora:\n        trainer.model.save_pretrained(d)\n    else:\n"
                             b"        trainer.save_model()\n", b"    trainer.save_model()\n    print(1)\n")
    assert [code for code, _ in _reasons(control)] == ["LC003"] and transform_source(control, "t.py").changed


def test_a_callback_save_is_not_said_to_be_out_of_the_trainers_reach():
    source = (b"from transformers import Trainer, TrainerCallback\n\n"
              b"class Save(TrainerCallback):\n    def on_train_end(self, args, state, control, **kwargs):\n"
              b"        if state.is_world_process_zero and args.use_lora:\n"
              b"            kwargs['model'].save_pretrained(args.output_dir)\n\n"
              b"def main(m):\n    trainer = Trainer(model=m, callbacks=[Save()])\n    trainer.train()\n")
    reasons = [reason for code, reason in _reasons(source) if code == "LC001"]
    assert reasons and all(r.startswith("a save in the callback `Save.on_train_end`") for r in reasons)
