"""Shapes learned from real GPU-first repositories (FastChat's train_lora.py, LLaVA's train.py):
flash-attn imported at the top, slow tokenizers of the model's family, byte-level BPE files.

Each stand-in is tested at unit level against its failing control; one end-to-end run of the
`gpu_repo_lora.py` fixture shows them together. The transformers 4.x half (slow tokenizers exist
there only) runs through LORA_CODEMOD_OLD_PYTHON, as bench/old_versions.sh sets it.
"""

from __future__ import annotations

import json
import os

import pytest

from .child import run_snippet
from .conftest import FIXTURE_SCRIPTS
from .test_real_style_fixtures import _explain, _kinds, smoke_cli

FLASH_ATTN = """
import importlib
import torch
report("control", fails(lambda: importlib.import_module("flash_attn.flash_attn_interface")))
INSTALL()
from flash_attn.bert_padding import pad_input, unpad_input
from flash_attn.flash_attn_interface import flash_attn_func, flash_attn_varlen_qkvpacked_func
from flash_attn.modules.mha import MHA
import flash_attn

class Patched(MHA):  # subclassing a stand-in name works too
    pass

report("imported", [flash_attn.__version__, pad_input.__module__.rsplit(".", 1)[-1], flash_attn_varlen_qkvpacked_func.__name__])
torch.manual_seed(0)
batch, length, heads, kv_heads, dim = 2, 5, 4, 2, 8
q = torch.randn(batch, length, heads, dim)
k, v = torch.randn(batch, length, kv_heads, dim), torch.randn(batch, length, kv_heads, dim)

def reference(q, k, v, causal):  # attention written out by hand, heads repeated for the kv groups
    k, v = k.repeat_interleave(heads // k.shape[2], dim=2), v.repeat_interleave(heads // v.shape[2], dim=2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / dim ** 0.5
    if causal:
        sq, sk = q.shape[1], k.shape[1]
        scores = scores.masked_fill(~torch.ones(sq, sk, dtype=torch.bool).tril(sk - sq), float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v)

dense = flash_attn_func(q, k, v, causal=True)
report("dense", [list(dense.shape), torch.allclose(dense, reference(q, k, v, True), atol=1e-5),
                 torch.allclose(flash_attn_func(q, k[:, :3], v[:, :3]), reference(q, k[:, :3], v[:, :3], False), atol=1e-5),
                 torch.allclose(flash_attn_func(q[:, -2:], k, v, causal=True), reference(q[:, -2:], k, v, True), atol=1e-5)])
# Two sequences of lengths 5 and 3, packed: each attends only to itself.
mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2])
k_full, v_full = k.repeat_interleave(2, dim=2), v.repeat_interleave(2, dim=2)
qkv = torch.stack([q, k_full, v_full], dim=2)
packed, indices, cu_seqlens, max_seqlen = unpad_input(qkv, mask)
out = pad_input(flash_attn_varlen_qkvpacked_func(packed, cu_seqlens, max_seqlen, causal=True), indices, batch, length)
report("varlen", [cu_seqlens.tolist(), max_seqlen, list(out.shape),
                  torch.allclose(out[0], reference(q[:1], k[:1], v[:1], True)[0], atol=1e-5),
                  torch.allclose(out[1, :3], reference(q[1:, :3], k[1:, :3], v[1:, :3], True)[0], atol=1e-5),
                  out[1, 3:].abs().sum().item()])
try:
    MHA()
    report("unprovided", None)
except RuntimeError as exc:
    report("unprovided", str(exc))
try:
    flash_attn_func(q, k, v, window_size=(4, 0))
    report("window", None)
except RuntimeError as exc:
    report("window", str(exc))
from transformers.utils import is_flash_attn_2_available
report("transformers_sees_it", is_flash_attn_2_available())
"""


def test_flash_attn_stand_in_computes_its_attention_functions_with_pytorch(tmp_path):
    results, standins = run_snippet(FLASH_ATTN, tmp_path)
    assert results["control"] == "ModuleNotFoundError"  # flash-attn is not installed here
    assert results["imported"] == ["0.0.0", "flash_attn_torch", "flash_attn_varlen_qkvpacked_func"]
    assert results["dense"] == [[2, 5, 4, 8], True, True, True]  # causal, non-causal, bottom-right causal
    assert results["varlen"] == [[0, 5, 8], 5, [2, 5, 4, 8], True, True, 0.0]
    assert results["unprovided"].startswith("flash_attn.modules.mha.MHA: flash-attn is not installed; lora-codemod "
                                            "smoke stands in for its attention functions only")
    assert results["window"].startswith("lora-codemod smoke computes flash-attn's plain attention only")
    # Package metadata still says "not installed": transformers keeps the default attention.
    assert results["transformers_sees_it"] is False
    details = [s["detail"] for s in standins if "flash_attn" in s["detail"]]
    assert details == [
        "import flash_attn -> a stand-in (flash-attn is not installed): its attention functions run as PyTorch "
        "attention, anything else fails when called",
        "flash_attn flash_attn_func() -> PyTorch scaled_dot_product_attention",
        "flash_attn flash_attn_varlen_qkvpacked_func() -> PyTorch scaled_dot_product_attention",
    ]


def test_flash_attn_stand_in_follows_what_is_installed_not_the_device(monkeypatch):
    import sys

    from lora_codemod.smoke.child import shims

    class Log:
        def standin(self, what, detail):
            raise AssertionError("nothing is imported here")

    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.setattr(shims, "_installed", {"flash_attn": True})
    for cpu in (True, False):  # installed: the real one loads, on a GPU and on the CPU
        monkeypatch.setattr(shims, "SETTINGS", {"cpu": cpu})
        shims.install_flash_attn_import(Log())
        assert not any(isinstance(f, shims.FlashAttnImport) for f in sys.meta_path)
    monkeypatch.setattr(shims, "_installed", {"flash_attn": False})
    monkeypatch.setattr(shims, "SETTINGS", {"cpu": False})  # a GPU run without flash-attn: the stand-in too
    shims.install_flash_attn_import(Log())
    shims.install_flash_attn_import(Log())
    assert sum(isinstance(f, shims.FlashAttnImport) for f in sys.meta_path) == 1
    assert isinstance(sys.meta_path[-1], shims.FlashAttnImport)  # last: an installed flash-attn wins


LIBRARY_PROBE = """
import glob
def recorded():
    return [json.loads(line)["detail"] for path in glob.glob(os.environ["EVENTS"] + "/*.jsonl")
            for line in open(path) if '"standin"' in line]
INSTALL()
import importlib.util
import transformers
from transformers.utils import import_utils
# transformers' own probe (it imports a package found without metadata) and torch inductor's.
report("probes", [import_utils._is_package_available("flash_attn", return_version=True)[0],
                  import_utils.is_flash_attn_2_available(), "flash_attn" in sys.modules])
from torch._inductor.kernel.flex import flex_flash_attention
report("inductor", flex_flash_attention.ensure_flash_available())
from transformers import AutoModelForCausalLM, Trainer
import peft
report("after_libraries", recorded())
report("script_finds_it", importlib.util.find_spec("flash_attn") is not None)
import flash_attn
report("after_script_import", recorded())
"""


def test_flash_attn_stand_in_is_listed_when_the_script_imports_it_not_a_library_probe(tmp_path):
    results, _ = run_snippet(LIBRARY_PROBE, tmp_path)
    assert results["probes"] == [False, False, False]  # to the libraries it is not installed
    assert results["inductor"] is False
    assert results["after_libraries"] == []
    assert results["script_finds_it"] is True
    assert [d.split(" (")[0] for d in results["after_script_import"]] == ["import flash_attn -> a stand-in"]


def test_byte_level_bpe_files_cover_any_text_within_the_vocabulary(tmp_path):
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from lora_codemod.smoke.child.tiny_model import CHARACTERS, VOCAB, VOCAB_SIZE, bpe_files

    vocab, merges = bpe_files()
    assert sorted(vocab.values()) == list(range(VOCAB_SIZE))  # the same ids as tokenizer.json
    (tmp_path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{m}\n" for m in merges), encoding="utf-8")
    # What a slow GPT2Tokenizer reads, loaded the way its fast converter loads it (which refuses
    # a merge whose result is not in the vocabulary).
    tokenizer = Tokenizer(models.BPE.from_file(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    assert tokenizer.encode(" a").ids == [VOCAB.index("\u2581"), VOCAB.index("a")]

    @settings(max_examples=200, deadline=None)
    @given(st.text())
    def any_text(text):
        assert all(0 <= i < VOCAB_SIZE for i in tokenizer.encode(text).ids)

    @settings(max_examples=100, deadline=None)
    @given(st.text(alphabet=CHARACTERS.replace("\t", "") + " "))
    def ascii_round_trips(text):
        assert tokenizer.decode(tokenizer.encode(text).ids) == text

    any_text()
    ascii_round_trips()


def test_transformers_5_stand_ins_keep_one_tokenizer_json(tmp_path):
    """On transformers 5 (CI's) nothing of the 4.x tokenizer files is written: its Qwen2/GPT-2
    classes would read vocab.json before tokenizer.json, and there is no slow class to name."""
    import transformers

    from lora_codemod.smoke.child import families

    if int(transformers.__version__.split(".")[0]) < 5:
        pytest.skip(f"transformers {transformers.__version__}: this checks the 5.x behaviour")
    directory = families.write_standin_dir(tmp_path / "gpt2", families.family_config("gpt2"), None)
    assert families.family_tokenizer_class("gpt2") is None and families.family_tokenizer_class("llama") is None
    assert not (directory / "vocab.json").exists() and not (directory / "merges.txt").exists()
    assert json.loads((directory / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_gpu_repo_fixture_unedited(tmp_path):
    # flash-attn and bitsandbytes are not installed here (as on many GPU machines).
    code, parsed, _ = smoke_cli(str(FIXTURE_SCRIPTS / "gpu_repo_lora.py"), "--device", "cpu", "--json", "--",
                                "--output_dir", "{output_dir}", "--q_lora", "True", "--bf16", "True", "--tf32", "True",
                                "--flash_attn", "True", "--deepspeed", "ds_config.json", "--num_train_epochs", "3",
                                "--per_device_train_batch_size", "2", "--logging_steps", "1", "--save_strategy", "no",
                                "--report_to", "wandb", cwd=tmp_path)
    run = parsed["runs"][0]
    assert code == 0, _explain(run)
    assert {"model", "tokenizer", "dataset", "cpu", "tracker", "steps"} <= _kinds(run)
    details = {s["what"]: [] for s in run["standins"]}
    for item in run["standins"]:
        details[item["what"]].append(item["detail"])
    assert {"import flash_attn -> a stand-in (flash-attn is not installed): its attention functions run as PyTorch "
            "attention, anything else fails when called",
            # --flash_attn True: the script's attention patch ran, computed by the stand-in
            "flash_attn flash_attn_varlen_qkvpacked_func() -> PyTorch scaled_dot_product_attention",
            "4-bit/8-bit quantization dropped (bitsandbytes is not installed): full-precision weights",
            "deepspeed='ds_config.json' -> off (DeepSpeed is not installed)"} <= set(details["missing"])
    assert run["verdict"] == "PASS: a valid LoRA adapter in {output_dir}"


# ---------------------------------------------------------------- transformers 4.x (bench/old_versions.sh)

OLD_TOKENIZERS = """
import transformers
from transformers import AutoTokenizer, GPT2Tokenizer, LlamaTokenizer
report("control", fails(lambda: AutoTokenizer.from_pretrained("liuhaotian/llava-v1.5-13b", use_fast=False)))
INSTALL()
from lora_codemod.smoke.child.tiny_model import VOCAB_SIZE
text = "Hello world 1289, the model: what?"
slow = AutoTokenizer.from_pretrained("liuhaotian/llava-v1.5-13b", use_fast=False)
fast = AutoTokenizer.from_pretrained("liuhaotian/llava-v1.5-13b")
report("llama", [type(slow).__name__, slow.legacy, isinstance(slow, LlamaTokenizer), type(fast).__name__,
                 slow("the model").input_ids == fast("the model").input_ids])
gpt2 = GPT2Tokenizer.from_pretrained("gpt2")
auto_gpt2 = AutoTokenizer.from_pretrained("gpt2", use_fast=False)
report("gpt2", [type(gpt2).__name__, type(auto_gpt2).__name__, max(gpt2(text).input_ids) < VOCAB_SIZE,
                gpt2.decode(gpt2(" " + text).input_ids, skip_special_tokens=True)])
report("version", transformers.__version__)
"""


def _old_python() -> str:
    old = os.environ.get("LORA_CODEMOD_OLD_PYTHON")
    if not old:
        pytest.skip("LORA_CODEMOD_OLD_PYTHON is not set: the transformers 4.x end is run by bench/old_versions.sh")
    return old


def test_family_slow_tokenizers_on_transformers_4(tmp_path):
    results, standins = run_snippet(OLD_TOKENIZERS, tmp_path, python=_old_python())
    assert results["version"].startswith("4.")
    assert results["control"]  # offline: the hub name does not load
    # LLaVA's preprocess_v1 reads tokenizer.legacy: the slow Llama class, as the real checkpoint gives.
    assert results["llama"] == ["LlamaTokenizer", True, True, "LlamaTokenizerFast", True]
    # A slow byte-level tokenizer reads vocab.json + merges.txt (a TypeError on a None path without them).
    assert results["gpt2"] == ["GPT2Tokenizer", "GPT2Tokenizer", True, " Hello world 1289, the model: what?"]
    assert {s["what"] for s in standins} >= {"tokenizer"}


def test_gpu_repo_fixture_on_transformers_4(tmp_path):
    code, parsed, _ = smoke_cli(str(FIXTURE_SCRIPTS / "gpu_repo_lora.py"), "--device", "cpu", "--python", _old_python(),
                                "--json", "--", "--output_dir", "{output_dir}", "--q_lora", "True", "--bf16", "True",
                                "--num_train_epochs", "3", "--per_device_train_batch_size", "2", "--logging_steps", "1",
                                "--save_strategy", "no", cwd=tmp_path)
    run = parsed["runs"][0]
    assert code == 0, _explain(run)
    assert run["verdict"] == "PASS: a valid LoRA adapter in {output_dir}"
