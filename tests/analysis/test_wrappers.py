"""Plain wrappers (contract v3): the class facts, the LoRA placements, correlated and decided tests."""

from __future__ import annotations

import re
import textwrap

import libcst as cst
import pytest

from lora_codemod.analysis.index import build_index
from lora_codemod.analysis.saves import SaveFacts
from lora_codemod.analysis.wrappers import RECEIVER
from lora_codemod.config import DEFAULT_FLAG_PATTERN

FLAG = re.compile(DEFAULT_FLAG_PATTERN, re.IGNORECASE)

WRAPPER = """\
import torch.nn as nn
from peft import get_peft_model
from transformers import Trainer


class Wrapper(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.model = inner
"""

THREE_WAY = """\
def setup(model, cfg):
    if hasattr(model, "model") and hasattr(model.model, "text_model"):
        model.model.text_model = get_peft_model(model.model.text_model, cfg)
    elif hasattr(model, "model"):
        model.model = get_peft_model(model.model, cfg)
    else:
        model = get_peft_model(model, cfg)
    return model
"""


def facts_of(source: str) -> SaveFacts:
    source = textwrap.dedent(source)
    return SaveFacts(build_index(cst.parse_module(source), FLAG, source))


def saves_of(source: str):
    return facts_of(source).saves


# -- the class: what every instance has ----------------------------------------------------------
@pytest.mark.parametrize("init,always", [
    ("self.model = inner", {"model"}),
    # every path that completes: both branches assign; a handler that raises does not complete
    ("if inner is None:\n    self.model = make()\nelse:\n    self.model = inner", {"model"}),
    ("try:\n    self.model = load()\nexcept Exception:\n    print('no')\n    raise", {"model"}),
    ("for _ in range(2):\n    self.model = inner", set()),  # the loop may not run
    ("if inner is not None:\n    self.model = inner", set()),  # one branch only
    ("try:\n    self.model = load()\nexcept Exception:\n    print('no')", set()),  # the handler goes on
    ("if inner is None:\n    raise ValueError('inner')\nself.model = inner", {"model"}),
    ("setattr(self, 'model', inner)", {"model"}),
])
def test_init_assigns_on_every_path(init, always):
    body = textwrap.indent(init, " " * 8)
    source = f"import torch.nn as nn\n\nclass W(nn.Module):\n    def __init__(self, inner):\n{body}\n"
    cls = facts_of(source).wrappers.classes["W"]
    assert cls.always - {"__init__"} == always


def test_class_body_names_count_and_getattr_is_recorded():
    facts = facts_of("""\
        import torch.nn as nn

        class W(nn.Module):
            kind = "tts"
            def forward(self, x):
                return x
            def __getattr__(self, name):
                return getattr(self.model, name)
        """)
    cls = facts.wrappers.classes["W"]
    assert {"kind", "forward"} <= cls.always and cls.getattr_hook


def test_not_a_plain_wrapper():
    facts = facts_of("""\
        import torch.nn as nn
        from transformers import PreTrainedModel

        class HasSave(nn.Module):
            def save_pretrained(self, d):
                pass

        class Pretrained(PreTrainedModel):
            pass

        class Sub(HasSave):
            pass
        """)
    assert facts.wrappers.classes == {}


# -- placements -----------------------------------------------------------------------------------
def _placements(source: str):
    facts = facts_of(source)
    save = facts.saves[-1]
    trainer = facts.facts.trainers_at(save.at)[0]
    return facts.wrappers.setup_of(trainer.model)


def test_placements_of_a_setup_function_with_parameter_substitution():
    setup = _placements(WRAPPER + THREE_WAY + """\
def main(args, inner):
    m = setup(Wrapper(inner), {})
    trainer = Trainer(model=m)
    trainer.model.save_pretrained("d")
""")
    assert setup.where == "setup" and setup.complete
    assert [(p.chain, p.live) for p in setup.placements] == [
        (("model", "text_model"), True), (("model",), True), ((), False)]  # __init__ always sets self.model


def test_placement_in_the_scope_that_holds_the_wrapper_and_in_its_methods():
    setup = _placements(WRAPPER + """\
    def add_lora(self, cfg):
        self.head = get_peft_model(self.head, cfg)


def main(inner, cfg):
    w = Wrapper(inner)
    w.model = get_peft_model(w.model, cfg)
    w.add_lora(cfg)
    trainer = Trainer(model=w)
    trainer.model.save_pretrained("d")
""")
    assert sorted(p.chain for p in setup.placements) == [("head",), ("model",)]


def test_a_peft_model_stored_elsewhere_is_not_followed():
    setup = _placements(WRAPPER + """\
def setup(model, cfg):
    text = get_peft_model(model.model, cfg)
    return model


def main(inner):
    trainer = Trainer(model=setup(Wrapper(inner), {}))
    trainer.model.save_pretrained("d")
""")
    assert setup is None or not setup.complete


def test_no_setup_for_a_wrapper_of_another_module():
    facts = facts_of("""\
        from peft import get_peft_model
        from transformers import Trainer
        from mypkg import Wrapper

        w = Wrapper(inner)
        w.model = get_peft_model(w.model, cfg)
        trainer = Trainer(model=w)
        trainer.model.save_pretrained("d")
        """)
    save = facts.saves[-1]
    assert save.wrapper is None and not save.review and not save.dead


def test_no_setup_for_a_wrapper_with_getattr():
    save = saves_of(WRAPPER + """\
    def __getattr__(self, name):
        return getattr(self.model, name)


w = Wrapper(inner)
w.model = get_peft_model(w.model, cfg)
trainer = Trainer(model=w)
trainer.model.save_pretrained("d")
""")[-1]
    assert save.wrapper is None and "__getattr__" in save.review


# -- at a save: correlated tests, decided tests, the mirror --------------------------------------
def test_the_usual_snippet_meets_both_live_placements_and_mirrors_the_setup():
    save = saves_of(WRAPPER + THREE_WAY + """\
def main(args, inner):
    model = setup(Wrapper(inner), {})
    trainer = Trainer(model=model)
    if args.use_lora:
        model_to_save = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
        model_to_save.save_pretrained("d")
""")[-1]
    assert [p.chain for p in save.wrapper.possible] == [("model", "text_model"), ("model",)]
    assert save.wrapper.mirror.branches == (
        (f'hasattr({RECEIVER}, "model") and hasattr({RECEIVER}.model, "text_model")', ("model", "text_model")),
        (f'hasattr({RECEIVER}, "model")', ("model",)),
        (None, ()),
    )


HAND_WRITTEN = """\
def main(args, inner):
    model = setup(Wrapper(inner), {})
    trainer = Trainer(model=model)
    if hasattr(model, "model") and hasattr(model.model, "text_model"):
        model.model.text_model.save_pretrained("d")
    elif hasattr(model, "model"):
        model.model.save_pretrained("d")
    else:
        model.save_pretrained("d")
"""


def test_a_save_whose_tests_the_class_decides_false_never_runs():
    saves = saves_of(WRAPPER + THREE_WAY + HAND_WRITTEN)
    assert [s.dead for s in saves] == [False, False, True]


def test_a_correlated_else_is_the_setup_else_when_the_class_decides_nothing():
    source = (WRAPPER.replace("self.model = inner", "if inner is not None:\n            self.model = inner")
              + THREE_WAY + HAND_WRITTEN)
    saves = saves_of(source)
    last = saves[-1]
    # the setup's else wrapped the wrapper whole: the trainer's model is a PeftModel there
    assert not last.dead and last.wrapper is None and not last.review


def test_tests_on_a_different_object_are_not_correlated():
    saves = saves_of(WRAPPER + THREE_WAY + """\
def main(args, inner, other):
    model = setup(Wrapper(inner), {})
    trainer = Trainer(model=model)
    if hasattr(other, "model"):
        pass
    else:
        trainer.model.save_pretrained("d")
""")
    save = saves[-1]
    assert not save.dead and [p.chain for p in save.wrapper.possible] == [("model", "text_model"), ("model",)]


def test_a_save_under_the_first_tests_meets_the_first_placement_only():
    saves = saves_of(WRAPPER + THREE_WAY + """\
def main(args, inner):
    model = setup(Wrapper(inner), {})
    trainer = Trainer(model=model)
    if hasattr(trainer.model, "model") and hasattr(trainer.model.model, "text_model"):
        trainer.model.save_pretrained("d")
""")
    assert [p.chain for p in saves[-1].wrapper.possible] == [("model", "text_model")]


def test_tests_that_name_a_local_setting_cannot_be_mirrored():
    save = saves_of(WRAPPER + """\
def setup(model, target):
    if target == "text":
        model.model = get_peft_model(model.model, cfg)
    else:
        model.head = get_peft_model(model.head, cfg)
    return model


def main(args, inner):
    trainer = Trainer(model=setup(Wrapper(inner), args.target))
    trainer.model.save_pretrained("d")
""")[-1]
    assert [p.chain for p in save.wrapper.possible] == [("model",), ("head",)] and save.wrapper.mirror is None
