"""Generated trainer scripts: every combination of how the model reaches the trainer, flag
spelling, rank guard, gathering helper, save and file style keeps the spec's invariants
(compiles, idempotent, only rule edits, invariants 7 and 8 on the trees) and gets the verdict
the analysis must establish."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lora_codemod.findings import Status
from lora_codemod.config import Config
from tests.helpers import assert_invariants

# name: (setup lines, trainer line, is the base name `model` stale at the save?)
SETUPS = {
    "peft_other_name": (["peft_model = get_peft_model(model, lora_config)"],
                        "trainer = Trainer(model=peft_model, args=targs)", True),
    "peft_same_name": (["model = get_peft_model(model, lora_config)"], "trainer = Trainer(model=model, args=targs)", False),
    "sft_peft_config": ([], "trainer = SFTTrainer(model=model, args=targs, peft_config=lora_config)", True),
    "alias": (["train_model = model", "if FLAG:", "I train_model = get_peft_model(model, lora_config)"],
              "trainer = Trainer(model=train_model, args=targs)", True),
    "conditional": (["lora_model = get_peft_model(model, lora_config) if FLAG else model"],
                    "trainer = Trainer(lora_model, targs)", True),
    "factory": (["peft_model = get_peft_model(model, lora_config)"], "trainer = build_trainer(peft_model, targs)", True),
    "moved": (["model = get_peft_model(model, lora_config).to(device)"], "trainer = Trainer(model=model, args=targs)",
              False),
    # (v3) a plain nn.Module wrapper, its LoRA put at one place, or at one of several by hasattr tests
    "wrapper_one": (["model = add_lora(Wrapper(model), lora_config)"], "trainer = Trainer(model=model, args=targs)",
                    False),
    "wrapper_three": (["model = setup_lora(Wrapper(model), lora_config)"], "trainer = Trainer(model=model, args=targs)",
                      False),
}
WRAPPERS = ("wrapper_one", "wrapper_three")
# (positive test, negative test whose else is the LoRA block)
FLAGS = {
    "use_lora": ("args.use_lora", "not args.use_lora"),
    "use_peft_lora": ("args.use_peft_lora", "not args.use_peft_lora"),
    "use_qlora": ("args.use_qlora", "not args.use_qlora"),
    "peft": ("peft", "not peft"),
    "lora_r": ("args.lora_r > 0", "args.lora_r == 0"),
    "finetuning_type": ("args.finetuning_type == QloraQ", "args.finetuning_type != QloraQ"),
}
SIGNALS = {
    "none": [],
    "env": ["local_rank = int(os.environ.get(QLOCAL_RANKQ, -1))"],
    "import": ["import torch.distributed as dist"],
}
GUARDS = {
    "none": None,
    "trainer": "trainer.is_world_process_zero()",
    "or": "targs.local_rank == 0 or targs.local_rank == -1",
    "in_list": "LOCAL_RANK in [-1, 0]",
    "not_rank": "not targs.local_rank",
    "dist": "not dist.is_initialized() or dist.get_rank() == 0",
}
SAVES = {
    "model": "model.save_pretrained(out_dir)",
    "chain_on_model": "model.base_model.save_pretrained(out_dir, safe_serialization=True)",
    "tokenizer": "tokenizer.save_pretrained(out_dir)",
    "trainer_model": "trainer.model.save_pretrained(out_dir)",
}
GATHERS = ("none", "before", "between", "after")
BLOCKS = ("if", "if_else", "if_not_else", "one_line", "unconditional")

HELPERS = [
    "def gather_state(m):",
    "I with deepspeed.zero.GatheredParameters(list(m.parameters())):",
    "I I return {k: v.cpu() for k, v in m.state_dict().items()}",
    "",
    "def build_trainer(m, a):",
    "I return Trainer(model=m, args=a)",
    "",
    "class Wrapper(torch.nn.Module):",
    "I def __init__(self, inner):",
    "I I super().__init__()",
    "I I self.model = inner",
    "",
    "def add_lora(w, cfg):",
    "I w.model = get_peft_model(w.model, cfg)",
    "I return w",
    "",
    "def setup_lora(w, cfg):",
    "I if hasattr(w, QmodelQ) and hasattr(w.model, Qtext_modelQ):",
    "I I w.model.text_model = get_peft_model(w.model.text_model, cfg)",
    "I elif hasattr(w, QmodelQ):",
    "I I w.model = get_peft_model(w.model, cfg)",
    "I else:",
    "I I w = get_peft_model(w, cfg)",
    "I return w",
    "",
]


NESTS = ("none", "try", "with", "elif")


def render(setup, flag, signal, guard, save, gather, block, scope, indent, newline, quote, comment,
           nest="none") -> str:
    setup_lines, trainer_line, _stale = SETUPS[setup]
    positive, negative = FLAGS[flag]
    q = lambda line: line.replace("Q", quote)  # noqa: E731
    lines = ["import os", "import deepspeed", "import torch", *[q(s) for s in SIGNALS[signal]], "", *map(q, HELPERS)]
    lines.append("def main(args, model, tokenizer, targs, lora_config, device, peft, LOCAL_RANK):"
                 if scope == "function" else "")  # replaced by a class for scope == "method"
    body = [q("out_dir = os.path.join(args.output_dir, QadapterQ)"),
            *[q(s.replace("FLAG", positive)) for s in setup_lines], trainer_line, "trainer.train()"]
    start = len(body)
    if comment:
        body.append("# save the adapter")
    saving = [SAVES[save]]
    if gather == "before":
        saving = ["state = gather_state(model)", *saving]
    elif gather == "between":
        saving = [*saving, "state = gather_state(model)", "tokenizer.save_pretrained(out_dir)"]
    elif gather == "after":
        saving = [*saving, "state = gather_state(model)"]
    test = GUARDS[guard]
    depth = 0
    if test is not None:
        body.append(f"if {test}:")
        depth = 1
    pad = "I " * depth
    if block == "unconditional":
        body += [pad + s for s in saving]
    elif block == "one_line":
        body.append(q(f"{pad}if {positive}: " + "; ".join(saving)))
    elif block == "if":
        body += [q(f"{pad}if {positive}:"), *[f"{pad}I {s}" for s in saving]]
    elif block == "if_else":
        body += [q(f"{pad}if {positive}:"), *[f"{pad}I {s}" for s in saving], f"{pad}else:", f"{pad}I trainer.save_model()"]
    else:
        body += [q(f"{pad}if {negative}:"), q(f"{pad}I print(QfullQ)"), f"{pad}else:", *[f"{pad}I {s}" for s in saving]]
    tail = body[start:]
    if nest == "try":
        tail = ["try:", *["I " + t for t in tail], "except Exception:", "I raise"]
    elif nest == "with":
        tail = ["with torch.no_grad():", *["I " + t for t in tail]]
    elif nest == "elif" and block in ("if", "if_else"):
        first = next(i for i, t in enumerate(tail) if t.lstrip("I ").startswith("if ") and q(positive) in t)
        pad_if = tail[first][: len(tail[first]) - len(tail[first].lstrip("I "))]
        tail = [*tail[:first], f"{pad_if}if args.debug:", f"{pad_if}I print(QdebugQ)".replace("Q", quote),
                tail[first].replace("if ", "elif ", 1), *tail[first + 1:]]
    body = body[:start] + tail
    if scope == "method":
        lines[-1] = "class Runner:"
        lines.append("I def main(self, args, model, tokenizer, targs, lora_config, device, peft, LOCAL_RANK):")
        prefix = "I I "
    else:
        prefix = "I " if scope == "function" else ""
    lines += [prefix + line if line else line for line in body]
    text = newline.join(lines) + newline
    return text.replace("I ", indent)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], report_multiple_bugs=False)
@given(
    setup=st.sampled_from(sorted(SETUPS)),
    flag=st.sampled_from(sorted(FLAGS)),
    signal=st.sampled_from(sorted(SIGNALS)),
    guard=st.sampled_from(sorted(GUARDS)),
    save=st.sampled_from(sorted(SAVES)),
    gather=st.sampled_from(GATHERS),
    block=st.sampled_from(BLOCKS),
    scope=st.sampled_from(["module", "function", "method"]),
    nest=st.sampled_from(NESTS),
    indent=st.sampled_from(["    ", "  ", "\t"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    quote=st.sampled_from(['"', "'"]),
    comment=st.booleans(),
    unsafe=st.booleans(),
)
def test_generated_script(setup, flag, signal, guard, save, gather, block, scope, nest, indent, newline, quote,
                          comment, unsafe):
    source = render(setup, flag, signal, guard, save, gather, block, scope, indent, newline, quote, comment,
                    nest).encode()
    result = assert_invariants(source, Config(unsafe_fixes=unsafe))
    stale = SETUPS[setup][2]
    in_block = block != "unconditional"
    own = [f for f in result.findings if f.code in ("LC001", "LC004") and f.line == _save_line(source, save)
           and (save == "tokenizer" or "`tokenizer" not in f.message)]
    if setup in WRAPPERS and save in ("model", "trainer_model"):
        # the wrapper itself has no save_pretrained: save from its placement (one: a fix; several: the
        # setup's own tests, an unsafe fix; a one-line block has no statement of its own to turn into them)
        several = setup == "wrapper_three"
        fixed = not several or (unsafe and block != "one_line")
        assert [(f.code, f.status) for f in own] == [("LC001", Status.FIXED if fixed else Status.REVIEW)], \
            _show(result)
        if fixed:
            assert b".model.save_pretrained(out_dir)" in result.output, _show(result)
    elif save == "model":
        if stale:
            assert [(f.code, f.status) for f in own] == [("LC001", Status.FIXED)], _show(result)
        elif in_block:
            assert [(f.code, f.status) for f in own] == [("LC004", Status.FIXED)], _show(result)
        else:
            assert own == [], _show(result)  # a correct unconditional save is not touched
    elif save == "chain_on_model":
        expected = [("LC001", Status.REVIEW)] if stale else ([("LC004", Status.FIXED)] if in_block else [])
        assert [(f.code, f.status) for f in own] == expected, _show(result)
    elif save == "tokenizer":
        assert all(f.status is Status.SKIPPED for f in own), _show(result)
    # LC002: only distributed scripts, never where a rank-zero test already holds the save
    lc002 = [f for f in result.findings if f.code == "LC002"]
    adapter = save in ("model", "trainer_model") or (save == "chain_on_model")
    if signal == "none" or guard != "none" or not adapter:
        assert not lc002, _show(result)
    elif block == "one_line" and gather != "none":
        # the save shares its line with the gather: no statement of its own to guard
        assert [f.status for f in lc002] == [Status.REVIEW], _show(result)
    else:
        assert lc002 and all(f.status is Status.FIXED for f in lc002), _show(result)
        # the gather stays on every rank: never inside the guard the rewrite added
        assert b"is_world_process_zero():" in result.output
    if newline == "\r\n":
        assert result.output.count(b"\n") == result.output.count(b"\r\n")


def _save_line(source: bytes, save: str) -> int:
    needle = SAVES[save].split("(")[0].encode()
    for number, line in enumerate(source.splitlines(), 1):
        if needle in line and b"def " not in line:
            return number
    raise AssertionError("save not rendered")


def _show(result) -> str:
    return "\n".join(f.format() for f in result.findings) + "\n" + result.output.decode()
