"""LC001: the adapter is saved from a stale model (a bug)."""

from __future__ import annotations

from lora_codemod.analysis.saves import Kind, Save
from lora_codemod.findings import Status
from lora_codemod.rules.base import Example, Rule, RuleContext
from lora_codemod.rules.placement import save_from_placement
from lora_codemod.rules.retarget import retarget


_CHOOSING_SETUP = """\
class Wrapper(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.model = inner


def setup_lora(model, cfg):
    if hasattr(model, "text_model"):
        model.text_model = get_peft_model(model.text_model, cfg)
    else:
        model.model = get_peft_model(model.model, cfg)
    return model


model = setup_lora(Wrapper(inner), lora_config)
trainer = Trainer(model=model, args=training_args)
trainer.model.save_pretrained(lora_dir)
"""


class StaleModelSave(Rule):
    code = "LC001"
    name = "stale-model-save"
    summary = ("The adapter is saved from the wrong object: a model the Trainer never trained (a full model is "
               "written), or a plain nn.Module wrapper with no save_pretrained (AttributeError, no adapter)")
    doc = """\
## What it does
Finds `R.save_pretrained(...)` after `trainer = Trainer(...)` (inside or outside an
`if args.use_lora:` block) whose receiver `R` is *stale*: the base model that `get_peft_model`
(or `prepare_model_for_kbit_training`, `PeftModel.from_pretrained`, a same-file LoRA setup
function) wrapped, or the model handed to a trainer that wraps it itself
(`SFTTrainer(model=model, peft_config=cfg)`). It rewrites the save to use the trainer's
unwrapped model, keeping the rest of the attribute chain and every argument.

The value of `R` is followed through every assignment that can reach the save: aliases
(`train_model = peft_model`), conditional expressions
(`get_peft_model(base, cfg) if args.use_lora else base`, taken on its LoRA side), `self.X`
across the methods of a class, and trainers built by a same-file factory function.

## Why is this bad?
`get_peft_model(model, cfg)` injects LoRA layers into `model` in place and returns a *new*
`PeftModel`. Saving the base `model` afterwards writes a full model (`config.json`,
`model.safetensors` with `base_layer` and `lora_A.default` keys) and no `adapter_config.json`:
neither `PeftModel.from_pretrained` nor a plain base-model load accepts it.

## Example
```python
peft_model = get_peft_model(model, lora_config)
trainer = Trainer(model=peft_model, args=training_args)
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
With a stock Trainer `trainer.model` is the object passed in (only FSDP1 wraps it, hence the
`module` check). Outside a LoRA block the assignment goes directly before the save.

## Plain wrappers (the trainer's model is an `nn.Module` of this file with no `save_pretrained`)
`trainer.model.save_pretrained(d)`, the usual `model_to_save.save_pretrained(d)` snippet, or
the trained name saved whole, on a plain wrapper raises `AttributeError` (often caught and logged
by the script: no adapter is written). The rule finds where the LoRA setup stored
`get_peft_model`'s result relative to the wrapper (a same-file setup function called with it,
the scope that holds it, the wrapper's own methods) and saves from there:

```python
# setup_lora_config: model.model = get_peft_model(model.model, cfg)
model_to_save.save_pretrained(d)        ->  model_to_save.model.save_pretrained(d)
```

When the setup chooses the place with `hasattr`/`isinstance` tests, the save becomes the
setup's own `if`/`elif`/`else`, asked of the saved object:

```python
if hasattr(model_to_save, "model") and hasattr(model_to_save.model, "text_model"):
    model_to_save.model.text_model.save_pretrained(d)
elif hasattr(model_to_save, "model"):
    model_to_save.model.save_pretrained(d)
else:
    model_to_save.save_pretrained(d)
```

That form is an **unsafe fix**, applied only with `--unsafe-fixes` (or `unsafe-fixes = true`):
it repeats at save time tests the setup ran before `get_peft_model` changed the object. Without
it the finding needs review and names the chains. A test the wrapper's class decides
(`hasattr(w, "model")` when `__init__` sets `self.model` on every path) is taken as decided; a
save in a branch that cannot run gets no finding.

## When it does not apply
Reported for review instead of rewritten: a longer chain on a stale name
(`model.base_model.save_pretrained`: the chain may not exist on the PEFT model), a save that
passes a `state_dict=` computed from the stale name (re-rooting alone would still write keys
without the PEFT prefix), a stale model that two trainers could own, and the
`trainer.model` snippet when `trainer.model` is a plain `nn.Module` wrapper defined in the file
when no LoRA placement of it is found, or it defines `__getattr__`, or its setup chooses by tests
that name more than the object (a setting the save cannot see). Left alone, with the reason: tokenizer, processor and config
saves; saves already made through the trainer; another model (`ref_model`); a model reassigned
after the trainer (`model = model.merge_and_unload()`). Inside a LoRA block, a receiver whose
value cannot be established is reported for review. A save of the trainer's own object is
LC004 (defensive), not this rule.
"""
    examples = (
        Example(
            title="base model saved under another name",
            before="""\
peft_model = get_peft_model(model, lora_config)
trainer = Trainer(model=peft_model, args=training_args)
if args.use_lora:
    model.save_pretrained(lora_dir)
""",
            after="""\
peft_model = get_peft_model(model, lora_config)
trainer = Trainer(model=peft_model, args=training_args)
if args.use_lora:
    model_to_save = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    model_to_save.save_pretrained(lora_dir)
""",
        ),
        Example(
            title="an alias decided by the LoRA flag, saved outside any LoRA block",
            before="""\
train_model = model
if args.use_lora:
    train_model = get_peft_model(model, lora_config)
trainer = Trainer(model=train_model, args=training_args)
trainer.train()
model.save_pretrained(out_dir)
""",
            after="""\
train_model = model
if args.use_lora:
    train_model = get_peft_model(model, lora_config)
trainer = Trainer(model=train_model, args=training_args)
trainer.train()
model_to_save = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
model_to_save.save_pretrained(out_dir)
""",
        ),
        Example(
            title="a correct script: the PEFT model under the base model's name",
            before="""\
model = get_peft_model(model, lora_config)
trainer = Trainer(model=model, args=training_args)
model.save_pretrained(out_dir)
""",
        ),
        Example(
            title="a plain nn.Module wrapper: save from where its setup put the LoRA",
            before="""\
class Wrapper(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.model = inner


def setup_lora(model, cfg):
    model.model = get_peft_model(model.model, cfg)
    return model


model = setup_lora(Wrapper(inner), lora_config)
trainer = Trainer(model=model, args=training_args)
model_to_save = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
model_to_save.save_pretrained(lora_dir)
""",
            after="""\
class Wrapper(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.model = inner


def setup_lora(model, cfg):
    model.model = get_peft_model(model.model, cfg)
    return model


model = setup_lora(Wrapper(inner), lora_config)
trainer = Trainer(model=model, args=training_args)
model_to_save = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
model_to_save.model.save_pretrained(lora_dir)
""",
        ),
        Example(
            title="the setup chooses with hasattr tests: an unsafe fix, for review without --unsafe-fixes",
            before=_CHOOSING_SETUP,
            reports="needs review",
        ),
        Example(
            title="the setup chooses with hasattr tests, --unsafe-fixes: its own tests, asked of the saved object",
            before=_CHOOSING_SETUP,
            after=_CHOOSING_SETUP.replace("""\
trainer.model.save_pretrained(lora_dir)
""", """\
if hasattr(trainer.model, "text_model"):
    trainer.model.text_model.save_pretrained(lora_dir)
else:
    trainer.model.model.save_pretrained(lora_dir)
"""),
            args={"unsafe_fixes": True},
        ),
        Example(
            title="reassigned after the trainer: left alone",
            before="""\
trainer = Trainer(model=model, args=training_args)
model = model.merge_and_unload()
if args.use_lora:
    model.save_pretrained(merged_dir)
""",
        ),
    )

    def check(self, ctx: RuleContext) -> None:
        for save in ctx.saves:
            if save.dead:
                continue  # its own tests cannot hold: it never runs
            if save.wrapper is not None:  # a plain wrapper saved whole, its LoRA placement known
                save_from_placement(ctx, save, self.code)
            elif save.kind is Kind.STALE:
                if save.review:
                    ctx.report(self.code, save.call, _stale_message(save), Status.REVIEW, save.review)
                else:
                    retarget(ctx, save, self.code, _stale_message(save))
            elif save.block is None:
                continue  # outside LoRA blocks only stale saves are findings
            elif save.kind is Kind.TRAINED:
                if save.ambiguous_owner:  # two trainers: the save works, its owner is ambiguous
                    ctx.report(self.code, save.call, f"`{save.shown}.save_pretrained` in a LoRA block",
                               Status.SKIPPED, save.review)
                elif save.review:  # the trained object itself cannot save_pretrained
                    ctx.report(self.code, save.call, f"`{save.shown}.save_pretrained` may not save the trained "
                               "adapter", Status.REVIEW, save.review)
            elif save.kind is Kind.UNKNOWN:
                ctx.report(self.code, save.call, f"`{save.shown}.save_pretrained` in a LoRA block may not save "
                           "the trained adapter", Status.REVIEW, save.reason)
            elif save.kind is Kind.THROUGH_TRAINER and save.review:
                ctx.report(self.code, save.call, f"`{save.shown}.save_pretrained` may not save the trained adapter",
                           Status.REVIEW, save.review)
            else:
                ctx.report(self.code, save.call, f"`{save.shown}.save_pretrained` in a LoRA block", Status.SKIPPED,
                           save.reason)


def _stale_message(save: Save) -> str:
    if save.stale == "peft_config":
        return (f"`{save.leading}` is the base model: {save.trainer} wraps it in a PeftModel itself (peft_config=), "
                "so this writes a full model, not the trained adapter")
    if save.trainer is None:
        return f"`{save.leading}` is not the object the trainers train: it may save a full model"
    return (f"`{save.leading}` is the base model that {save.trainer}'s PEFT model was wrapped from: this writes a "
            "full model, not the trained adapter")


RULE = StaleModelSave()
