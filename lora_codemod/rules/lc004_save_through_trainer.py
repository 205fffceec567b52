"""LC004: save the adapter through the trainer (defensive)."""

from __future__ import annotations

from lora_codemod.analysis.saves import Kind
from lora_codemod.rules.base import Example, Rule, RuleContext
from lora_codemod.rules.retarget import retarget


class SaveThroughTrainer(Rule):
    code = "LC004"
    name = "save-through-trainer"
    summary = "Save the adapter through trainer.model (defensive: the save works today)"
    doc = """\
## What it does
Finds `R.save_pretrained(...)` inside an `if args.use_lora:` block, after the trainer is built,
whose receiver `R` is the very object the trainer trains (reached through plain assignments and
identity steps such as `.to(device)`), and rewrites it exactly as LC001 does: save from
`trainer.model` (unwrapped), keeping the chain and every argument.

## Why is this bad?
It is not a bug today: the save writes the trained adapter. It is fragile: the script saves
through a name that the next edit may rebind (`model = model.merge_and_unload()`), compile or
wrap, and then writes a full model without a word. Saving through the trainer keeps working.
This is the split of LC001: a correct script is told apart from a broken one, and
`--ignore LC004` makes `--check` fail only on real bugs.

## Example
```python
model = get_peft_model(model, lora_config)
trainer = Trainer(model=model, args=training_args)
trainer.train()
if args.use_lora:
    model.save_pretrained(lora_dir)
```

## Fix
```python
if args.use_lora:
    model_to_save = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    model_to_save.save_pretrained(lora_dir)
```
The attribute chain is kept, so a save through a wrapper still reaches the PEFT model inside it:
`model.model.text_model.save_pretrained(d)` becomes
`model_to_save.model.text_model.save_pretrained(d)` (`trainer.model.save_pretrained` alone
would raise `AttributeError` on a plain `nn.Module` wrapper).

## When it does not apply
Saves outside LoRA blocks (a correct unconditional save is not touched), saves already made
through the trainer, and a model that two trainers train (the owner is ambiguous: left alone).
"""
    examples = (
        Example(
            title="the PEFT model under the base model's name",
            before="""\
model = get_peft_model(model, lora_config)
trainer = Trainer(model=model, args=training_args)
if args.use_lora:
    model.save_pretrained(lora_dir)
""",
            after="""\
model = get_peft_model(model, lora_config)
trainer = Trainer(model=model, args=training_args)
if args.use_lora:
    model_to_save = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    model_to_save.save_pretrained(lora_dir)
""",
        ),
        Example(
            title="the chain through a wrapper is kept",
            before="""\
trainer = Trainer(model=model, args=training_args)
if args.use_lora:
    model.model.text_model.save_pretrained(lora_dir, safe_serialization=True)
""",
            after="""\
trainer = Trainer(model=model, args=training_args)
if args.use_lora:
    model_to_save = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    model_to_save.model.text_model.save_pretrained(lora_dir, safe_serialization=True)
""",
        ),
        Example(
            title="outside a LoRA block: not touched",
            before="""\
model = get_peft_model(model, lora_config)
trainer = Trainer(model=model, args=training_args)
model.save_pretrained(out_dir)
""",
        ),
        Example(
            title="already saves through the trainer",
            before="""\
trainer = Trainer(model=model, args=training_args)
if args.use_lora:
    trainer.model.save_pretrained(lora_dir)
""",
        ),
    )

    def check(self, ctx: RuleContext) -> None:
        for save in ctx.saves:
            if (save.kind is Kind.TRAINED and save.block is not None and not save.review and not save.dead
                    and save.wrapper is None):
                message = (f"`{save.leading}` is the model {save.trainer} trains, so this save works today; saving "
                           f"through {save.trainer}.model keeps it working if `{save.leading}` is later rebound "
                           "or wrapped")
                retarget(ctx, save, self.code, message)


RULE = SaveThroughTrainer()
