"""Generated trainer scripts: every combination of setup, save, block shape and file style keeps
the spec's invariants (compiles, idempotent, only rule edits) and gets the expected verdict."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lora_codemod.findings import Status
from tests.helpers import assert_invariants

SETUPS = {
    # name: (setup lines, trainer call, names that are stale bases)
    "peft_other_name": (["peft_model = get_peft_model(model, lora_config)"], "Trainer(model=peft_model, args=targs)"),
    "peft_same_name": (["model = get_peft_model(model, lora_config)"], "Trainer(model=model, args=targs)"),
    "sft_peft_config": ([], "SFTTrainer(model=model, args=targs, peft_config=lora_config)"),
    "positional": (["lora = get_peft_model(model, lora_config)"], "Trainer(lora, targs)"),
}
SIGNALS = {
    "none": [],
    "env": ['local_rank = int(os.environ.get(QLOCAL_RANKQ, -1))'],
    "import": ["import torch.distributed as dist"],
}
SAVES = {
    "model": ("model.save_pretrained(out_dir)", True),
    "chain_on_model": ("model.base_model.save_pretrained(out_dir, safe_serialization=True)", None),
    "tokenizer": ("tokenizer.save_pretrained(out_dir)", False),
    "config": ("model.config.save_pretrained(out_dir)", False),
    "trainer_model": ("trainer.model.save_pretrained(out_dir)", False),
}
BLOCKS = ("if", "if_else", "if_not_else", "guarded", "one_line")


def render(setup, signal, save, block, scope, indent, newline, quote, comment) -> str:
    setup_lines, trainer_call = SETUPS[setup]
    save_code = SAVES[save][0]
    signal_lines = [line.replace("Q", quote) for line in SIGNALS[signal]]
    lines = ["import os", *signal_lines, "", "def main(args, model, tokenizer, targs, lora_config):" if scope == "function" else ""]
    body = [
        f"out_dir = os.path.join(args.output_dir, {quote}lora_adapters{quote})",
        *setup_lines,
        f"trainer = {trainer_call}",
        "trainer.train()",
    ]
    if comment:
        body.append("# save the adapter")
    one = indent
    if block == "if":
        body += ["if args.use_lora:", f"{one}{save_code}"]
    elif block == "if_else":
        body += ["if args.use_lora:", f"{one}{save_code}", "else:", f"{one}trainer.save_model()"]
    elif block == "if_not_else":
        body += ["if not args.use_lora:", f"{one}print({quote}full{quote})", "else:", f"{one}{save_code}"]
    elif block == "guarded":
        body += ["if trainer.is_world_process_zero():", f"{one}if args.use_lora:", f"{one}{one}{save_code}"]
    else:
        body += [f"if args.use_lora: {save_code}"]
    prefix = indent if scope == "function" else ""
    lines += [prefix + line if line else line for line in body]
    return newline.join(lines) + newline


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    setup=st.sampled_from(sorted(SETUPS)),
    signal=st.sampled_from(sorted(SIGNALS)),
    save=st.sampled_from(sorted(SAVES)),
    block=st.sampled_from(BLOCKS),
    scope=st.sampled_from(["module", "function"]),
    indent=st.sampled_from(["    ", "  ", "\t"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    quote=st.sampled_from(['"', "'"]),
    comment=st.booleans(),
)
def test_generated_script(setup, signal, save, block, scope, indent, newline, quote, comment):
    source = render(setup, signal, save, block, scope, indent, newline, quote, comment).encode()
    result = assert_invariants(source)
    lc001 = [f for f in result.findings if f.code == "LC001"]
    assert len(lc001) == 1, [f.format() for f in result.findings]
    finding = lc001[0]
    fixable = SAVES[save][1]
    if save == "chain_on_model":
        # a chain on the very object the trainer got is kept; on a base the trainer never saw,
        # or one the trainer wraps itself (peft_config=), it is reviewed
        fixable = setup == "peft_same_name"
    assert (finding.status is Status.FIXED) == fixable, finding.format()
    if fixable:
        assert b"model_to_save" in result.output
        assert f"hasattr(trainer.model, {quote}module{quote})".encode() in result.output
    if save == "chain_on_model" and not fixable:
        assert finding.status is Status.REVIEW
    # LC002: only distributed scripts, only unguarded blocks, never around a collective
    lc002 = [f for f in result.findings if f.code == "LC002"]
    saves_adapter = fixable or save == "trainer_model"
    if signal == "none" or block == "guarded" or not saves_adapter:
        assert not lc002
    elif block == "if_else":
        # the guard goes inside the LoRA body; trainer.save_model() in the else is not in the block
        assert [f.status for f in lc002] == [Status.FIXED]
    else:
        assert [f.status for f in lc002] == [Status.FIXED]
    # the output keeps the file's newline style everywhere
    if newline == "\r\n":
        assert result.output.count(b"\n") == result.output.count(b"\r\n")
