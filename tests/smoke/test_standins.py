"""Hub stand-ins in a real child: models by family, tokenizers, processors, configs, --like, datasets.

Each snippet first shows the call failing without the stand-in (offline: nothing can be
downloaded), then installs the instrumentation and makes the same call.
"""

from __future__ import annotations

import json

import pytest

from lora_codemod.smoke.child.tiny_model import VOCAB_SIZE

from .child import run_snippet

MODELS = """
import torch
import transformers
from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer,
                          CLIPVisionConfig, CLIPVisionModel, LlamaForCausalLM)
from peft import LoraConfig, get_peft_model

report("control", fails(lambda: AutoModelForCausalLM.from_pretrained("Qwen/Qwen2-0.5B")))
report("control_tokenizer", fails(lambda: AutoTokenizer.from_pretrained("Qwen/Qwen2-0.5B")))
INSTALL()

families = {}
for name, auto, targets in [
    ("Qwen/Qwen2-0.5B", AutoModelForCausalLM, ["q_proj", "v_proj"]),
    ("openai-community/gpt2", AutoModelForCausalLM, ["c_attn"]),
    ("microsoft/Phi-3-mini-4k-instruct", AutoModelForCausalLM, ["qkv_proj"]),
    ("tiiuae/falcon-7b", AutoModelForCausalLM, ["query_key_value"]),
    ("bigscience/bloom-560m", AutoModelForCausalLM, ["query_key_value"]),
    ("facebook/opt-125m", AutoModelForCausalLM, ["q_proj", "v_proj"]),
    ("mistralai/Mistral-7B-v0.1", AutoModelForCausalLM, ["q_proj"]),
    ("google/flan-t5-small", AutoModelForSeq2SeqLM, ["q", "v"]),
    ("some-org/unknown-model", AutoModelForCausalLM, ["q_proj"]),
]:
    model = auto.from_pretrained(name, torch_dtype=torch.bfloat16, trust_remote_code=True)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=targets))
    families[name] = [model.config.model_type, type(model).__name__, sum(p.numel() for p in model.parameters()),
                      model.config._name_or_path]
report("families", families)

report("concrete", type(LlamaForCausalLM.from_pretrained("meta-llama/Llama-3.2-1B")).__name__)
tower = CLIPVisionModel.from_pretrained("openai/clip-vit-large-patch14-336")
size = CLIPVisionConfig.from_pretrained("openai/clip-vit-large-patch14-336").image_size
pixels = torch.zeros(1, 3, size, size)
report("clip", [type(tower).__name__, list(pixels.shape), list(tower(pixel_values=pixels).last_hidden_state.shape)])
report("config", AutoConfig.from_pretrained("Qwen/Qwen2-0.5B").model_type)
from transformers import AutoProcessor
report("processor", AutoProcessor.from_pretrained("Qwen/Qwen2-0.5B").chat_template is not None)

tokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen2-0.5B-Instruct")
model = AutoModelForCausalLM.from_pretrained("Qwen/Qwen2-0.5B-Instruct")
text = tokenizer.apply_chat_template([{"role": "user", "content": "2 + 2 = 4, 1989!"}], tokenize=False, add_generation_prompt=True)
ids = tokenizer("Digits 0123456789, UPPER lower, ünïcødé 中文 \\t tabs")["input_ids"]
report("tokenizer", {"template": text, "bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id,
                     "pad": tokenizer.pad_token_id, "unk": tokenizer.unk_token_id, "first": ids[0],
                     "max_id": max(ids), "rows": model.get_input_embeddings().weight.shape[0]})
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return run_snippet(MODELS, tmp_path_factory.mktemp("models"))


def test_hub_models_fail_offline_without_stand_ins(models):
    results, _ = models
    assert results["control"] == "OSError" and results["control_tokenizer"] == "OSError"


def test_model_stand_ins_keep_the_family_and_its_module_names(models):
    results, standins = models
    families = results["families"]
    # get_peft_model found c_attn, qkv_proj, query_key_value, q/v: the module names match the family.
    assert {name: value[0] for name, value in families.items()} == {
        "Qwen/Qwen2-0.5B": "qwen2", "openai-community/gpt2": "gpt2", "microsoft/Phi-3-mini-4k-instruct": "phi3",
        "tiiuae/falcon-7b": "falcon", "bigscience/bloom-560m": "bloom", "facebook/opt-125m": "opt",
        "mistralai/Mistral-7B-v0.1": "mistral", "google/flan-t5-small": "t5", "some-org/unknown-model": "llama",
    }
    assert families["google/flan-t5-small"][1] == "T5ForConditionalGeneration"
    assert all(value[2] < 3_000_000 for value in families.values()), families
    assert families["Qwen/Qwen2-0.5B"][3] == "Qwen/Qwen2-0.5B"  # the adapter config will name the hub model
    details = [s["detail"] for s in standins if s["what"] == "model"]
    assert any(d.startswith("Qwen/Qwen2-0.5B -> tiny Qwen2ForCausalLM (qwen2, ") for d in details)


def test_concrete_classes_vision_towers_processors_and_configs(models):
    results, standins = models
    assert results["concrete"] == "LlamaForCausalLM"
    name, pixels, hidden = results["clip"]
    assert name == "CLIPVisionModel" and pixels == [1, 3, 32, 32] and hidden[0] == 1
    assert results["config"] == "qwen2"
    assert results["processor"] is True  # a text model's processor is its tokenizer, template included
    assert {"model", "tokenizer", "processor", "config"} <= {s["what"] for s in standins}


def test_stand_in_tokenizer_has_special_tokens_a_chat_template_and_ids_within_the_embedding(models):
    tokenizer = models[0]["tokenizer"]
    assert tokenizer["template"] == "<|im_start|>user\n2 + 2 = 4, 1989!<|im_end|>\n<|im_start|>assistant\n"
    assert None not in (tokenizer["bos"], tokenizer["eos"], tokenizer["pad"], tokenizer["unk"])
    assert tokenizer["first"] == tokenizer["bos"]  # BOS prepended, as Llama tokenizers do
    assert tokenizer["max_id"] < tokenizer["rows"] == VOCAB_SIZE


LIKE = """
from transformers import AutoModel, AutoTokenizer
INSTALL()
model = AutoModel.from_pretrained("openai/clip-vit-base-patch32")
tokenizer = AutoTokenizer.from_pretrained("openai/clip-vit-base-patch32")
report("like", [model.config.model_type, model.config.text_config.hidden_size, model.config.vision_config.hidden_size,
                model.config.text_config.vocab_size, sum(p.numel() for p in model.parameters()), type(tokenizer).__name__,
                len(tokenizer)])
"""


def test_like_shrinks_a_local_config_with_its_sub_configs_and_keeps_its_tokenizer(tmp_path):
    from transformers import CLIPConfig

    from lora_codemod.smoke.child.tiny_model import write_tokenizer

    like = tmp_path / "like"
    CLIPConfig().save_pretrained(like)  # text 512 / vision 768 wide, 12 layers each: about 150M parameters
    write_tokenizer(like)
    (like / "tokenizer_config.json").write_text(json.dumps({**json.loads((like / "tokenizer_config.json").read_text()),
                                                            "model_max_length": 77}))
    (tmp_path / "run").mkdir()
    results, standins = run_snippet(LIKE, tmp_path / "run", settings={"like": str(like)})
    model_type, text_hidden, vision_hidden, vocab, params, tokenizer_class, size = results["like"]
    assert (model_type, text_hidden, vision_hidden) == ("clip", 32, 32)
    assert vocab == CLIPConfig().text_config.vocab_size  # the user's tokenizer: its vocabulary is kept
    assert params < 5_000_000
    assert any("your tokenizer from --like" in s["detail"] for s in standins)


DATASETS = """
import datasets
report("control", fails(lambda: datasets.load_dataset("trl-lib/Capybara")))
INSTALL()
whole = datasets.load_dataset("trl-lib/Capybara")
report("splits", sorted(whole))
report("columns", whole["train"].column_names)
report("first_messages", whole["train"][0]["messages"])
report("sliced", [len(datasets.load_dataset("tatsu-lab/alpaca", split="train[:10%]")), 
                  [d.split._name for d in datasets.load_dataset("x/y", split=["train", "test"])]])
report("streaming", type(datasets.load_dataset("HuggingFaceFW/fineweb", split="train", streaming=True)).__name__)
report("preference", datasets.load_dataset("trl-lib/ultrafeedback_binarized", split="train").column_names)
report("sharegpt", datasets.load_dataset("anon8231489123/ShareGPT_Vicuna_unfiltered", split="train")[0]["conversations"][0])
report("missing_json", len(datasets.load_dataset("json", data_files="data/missing.jsonl", split="train")))
with open("real.jsonl", "w") as handle:
    handle.write('{"text": "a real row"}\\n')
report("real_json", list(datasets.load_dataset("json", data_files="real.jsonl", split="train")["text"]))
report("from_disk", sorted(datasets.load_from_disk("does/not/exist")))
split = datasets.load_dataset("yahma/alpaca-cleaned")["train"].train_test_split(test_size=2000)
report("split_sizes", [len(split["train"]), len(split["test"])])
"""


def test_dataset_stand_ins(tmp_path):
    results, standins = run_snippet(DATASETS, tmp_path)
    assert results["control"] in ("ConnectionError", "DatasetNotFoundError", "OfflineModeIsEnabled", "FileNotFoundError")
    assert results["splits"] == ["test", "train", "validation"]
    assert {"text", "content", "instruction", "input", "output", "question", "answer", "messages"} == set(results["columns"])
    assert results["first_messages"][0]["role"] == "user" and results["first_messages"][1]["role"] == "assistant"
    assert results["sliced"] == [32, ["train", "test"]]
    assert results["streaming"] == "IterableDataset"
    assert {"prompt", "chosen", "rejected"} <= set(results["preference"])
    assert set(results["sharegpt"]) == {"from", "value"}
    assert results["missing_json"] == 32
    assert results["real_json"] == ["a real row"]  # a file that exists is read for real
    assert results["from_disk"] == ["test", "train", "validation"]
    assert results["split_sizes"] == [24, 8]
    assert any(s["detail"].startswith("trl-lib/Capybara -> 32 synthetic rows") for s in standins)
    assert any(s["detail"].startswith("train_test_split(test_size=2000") for s in standins)


def test_tokenizer_ids_stay_within_the_vocabulary_for_any_text():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from lora_codemod.smoke.child.tiny_model import build_tokenizer

    tokenizer = build_tokenizer()
    assert len(tokenizer) == VOCAB_SIZE

    @settings(max_examples=200, deadline=None)
    @given(st.text())
    def check(text):
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id and max(ids) < VOCAB_SIZE

    check()
    assert max(tokenizer("8 9 1989 2024 digits")["input_ids"]) < VOCAB_SIZE


def test_sentencepiece_model_matches_the_fast_tokenizer(tmp_path):
    sentencepiece = pytest.importorskip("sentencepiece", reason="sentencepiece is not installed (smoke extra)")
    from transformers import AutoTokenizer

    from lora_codemod.smoke.child.tiny_model import write_tokenizer

    write_tokenizer(tmp_path)
    processor = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    fast = AutoTokenizer.from_pretrained(str(tmp_path))
    text = "Hello World, the tiny model saved 1989 weights!"
    assert processor.vocab_size() == VOCAB_SIZE
    assert (processor.bos_id(), processor.eos_id(), processor.pad_id(), processor.unk_id()) == (
        fast.bos_token_id, fast.eos_token_id, fast.pad_token_id, fast.unk_token_id)
    assert [processor.bos_id(), *processor.encode(text)] == fast(text)["input_ids"]
