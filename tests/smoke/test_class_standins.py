"""Stand-ins from the class that asks, special-token ids in the tiny vocabulary, --like per family,
and the facts a name fixes, in a real child with the speech_lm fixture project's own package.

Each snippet first makes the call the way it went before (the control: it fails), then installs
the instrumentation and makes the calls a speech trainer makes.
"""

from __future__ import annotations

import json

import pytest

from lora_codemod.smoke.child.tiny_model import VOCAB_SIZE

from .child import run_snippet
from .conftest import FIXTURE_SCRIPTS

PROJECT = FIXTURE_SCRIPTS / "speech_lm_project"
HUB = "acme-audio/speech-lm-v2-3b-base"

CLASS = f"""
import sys, numpy as np, torch
sys.path.insert(0, {str(PROJECT)!r})
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, WhisperProcessor
import speech_lm
from speech_lm import SpeechLMConfig, SpeechLMModel
from lora_codemod.smoke.child import families
from pathlib import Path

# Controls: the project's config read from the stand-in the name guessed (a Llama's), as before:
# full-size sub-configs, the class's Llama-3 ids (its pad past a tiny embedding), a tokenizer
# that splits the audio token into characters; and a Whisper stand-in's 80 mel bins.
llama = families.write_standin_dir(Path("llama-standin"), families.family_config({HUB!r}), None)
guessed = SpeechLMConfig.from_pretrained(str(llama))
sample = guessed.audio_bos_token + guessed.audio_in_token + guessed.audio_eos_token + " hello world"
report("control_guessed", [guessed.text_config.hidden_size, guessed.audio_encoder_config.d_model, guessed.audio_in_token_idx,
                           AutoTokenizer.from_pretrained(str(llama))(sample)["input_ids"].count(guessed.audio_in_token_idx)])
report("control_padding", fails(lambda: torch.nn.Embedding({VOCAB_SIZE}, 8, padding_idx=SpeechLMConfig().pad_token_id)))
encoder = SpeechLMModel(families.class_standin(SpeechLMConfig).config).audio_encoder
report("control_mel", fails(lambda: encoder(torch.zeros(1, 80, 3000))))  # a Whisper stand-in's 80 bins

INSTALL()
tokenizer = AutoTokenizer.from_pretrained({HUB!r})  # before any config: the name spells speech_lm
config = SpeechLMConfig.from_pretrained({HUB!r})
model = SpeechLMModel.from_pretrained(pretrained_model_name_or_path={HUB!r}, config=config)
rows = model.get_input_embeddings().weight.shape[0]
text = config.audio_bos_token + config.audio_in_token + config.audio_eos_token + " hello world"
ids = tokenizer(text)["input_ids"]
report("ids", {{
    "rows": rows, "text_vocab": config.text_config.vocab_size, "max_id": max(ids),
    "audio_in": [config.audio_in_token_idx, tokenizer.convert_tokens_to_ids(config.audio_in_token), ids.count(config.audio_in_token_idx)],
    "audio_out": [config.audio_out_token_idx, tokenizer.convert_tokens_to_ids(config.audio_out_token)],
    "audio_eos": [config.audio_eos_token_id, tokenizer.convert_tokens_to_ids(config.audio_eos_token)],
    "pad": [config.pad_token_id, config.audio_encoder_config.pad_token_id, tokenizer.pad_token_id],
    "stream": [config.audio_stream_bos_id, config.audio_stream_eos_id, config.audio_codebook_size],
}})
report("sizes", [config.text_config.hidden_size, config.text_config.num_hidden_layers, config.audio_encoder_config.d_model,
                 config.audio_encoder_config.encoder_layers, config.audio_encoder_config.num_mel_bins,
                 sum(p.numel() for p in model.parameters())])
processor = WhisperProcessor.from_pretrained("openai/whisper-large-v3")
features = processor.feature_extractor(np.zeros(16000, dtype="float32"), sampling_rate=16000, return_tensors="pt").input_features
out = model(input_ids=torch.tensor([ids]), audio_features=features, labels=torch.tensor([ids]))
report("forward", [list(features.shape), bool(torch.isfinite(out.loss))])
report("small_whisper", WhisperProcessor.from_pretrained("openai/whisper-small").feature_extractor.feature_size)

# The class decides before the name; the same name then keeps that family.
named = SpeechLMConfig.from_pretrained("some-org/checkpoint-7")
report("class_first", [named.model_type, AutoConfig.from_pretrained("some-org/checkpoint-7").model_type])
# A name that spells nothing, where one top-level type is registered: that type.
report("only_registered", [AutoConfig.from_pretrained("model_ckpt").model_type, type(AutoModel.from_pretrained(HUB_NAME)).__name__])

class TtsConfig(PretrainedConfig):  # a class of the script's own, registered nowhere
    model_type = "tiny_tts"
    def __init__(self, hidden_size=2048, num_hidden_layers=24, vocab_size=50000, pad_token_id=49999,
                 speech_token="<|speech|>", speech_token_id=49000, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_hidden_layers, self.vocab_size = hidden_size, num_hidden_layers, vocab_size
        self.speech_token, self.speech_token_id, self.pad_token_id = speech_token, speech_token_id, pad_token_id
tts = TtsConfig.from_pretrained("acme/tts-large")
report("unregistered", [tts.hidden_size, tts.num_hidden_layers, tts.vocab_size, tts.pad_token_id, tts.speech_token_id])
""".replace("HUB_NAME", repr(HUB))


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    return run_snippet(CLASS, tmp_path_factory.mktemp("class"))


def test_control_the_guessed_family_breaks_the_projects_model(class_run):
    results, _ = class_run
    assert results["control_guessed"] == [4096, 1280, 128015, 0]
    assert results["control_padding"] == "AssertionError"  # Padding_idx must be within num_embeddings
    assert results["control_mel"] == "RuntimeError"  # expected input to have 128 channels


def test_the_projects_class_gives_a_stand_in_of_its_own_defaults_shrunk(class_run):
    results, _ = class_run
    text_hidden, text_layers, audio_width, audio_layers, mel_bins, parameters = results["sizes"]
    assert (text_hidden, text_layers, audio_width, audio_layers) == (32, 2, 32, 2)
    assert mel_bins == 128  # not a size: kept, as the real encoder has it
    assert parameters < 200_000
    assert results["forward"] == [[1, 128, 3000], True]


def test_special_token_ids_fit_the_tiny_vocabulary_and_match_the_tokenizer(class_run):
    ids = class_run[0]["ids"]
    assert ids["rows"] == ids["text_vocab"] == VOCAB_SIZE + 4  # <|audio_bos|>, <|audio_eos|>, <|AUDIO|>, <|AUDIO_OUT|>
    assert ids["max_id"] < ids["rows"]
    audio_in, tokenized, count = ids["audio_in"]
    assert audio_in == tokenized and VOCAB_SIZE <= audio_in < ids["rows"] and count == 1
    assert ids["audio_out"][0] == ids["audio_out"][1] and ids["audio_eos"][0] == ids["audio_eos"][1]
    assert ids["pad"] == [0, 0, 0]  # the config, its audio-encoder sub-config and the tokenizer agree
    assert ids["stream"] == [1024, 1025, 1024]  # audio codebook ids, not text tokens: left alone


def test_the_class_decides_before_the_name_and_a_registered_type_before_llama(class_run):
    results, standins = class_run
    assert results["class_first"] == ["speech_lm", "speech_lm"]
    assert results["only_registered"] == ["speech_lm", "SpeechLMModel"]
    assert results["unregistered"] == [32, 2, VOCAB_SIZE + 1, 0, VOCAB_SIZE]
    details = {s["detail"] for s in standins}
    assert (f"{HUB} -> tiny speech_lm stand-in: SpeechLMConfig's defaults, shrunk; 7 special-token ids mapped into "
            "the tiny vocabulary (asked for by SpeechLMConfig)") in details
    assert (f"{HUB} -> tiny speech_lm stand-in with speech_lm's special tokens (<|audio_bos|>, <|audio_eos|>, <|AUDIO|>, "
            "<|AUDIO_OUT|>) (the name spells a model type your code registered) (ChatML template)") in details
    assert any(d.startswith("some-org/checkpoint-7 -> tiny speech_lm stand-in") and d.endswith("(asked for by SpeechLMConfig)")
               for d in details)
    assert any(d.startswith("model_ckpt -> tiny speech_lm stand-in") and
               d.endswith("(the one model type your code registered with AutoConfig)") for d in details)
    assert "openai/whisper-large-v3 -> tiny whisper stand-in (128 mel bins, as large-v3 has)" in details
    assert "openai/whisper-small -> tiny whisper stand-in" in details
    assert results["small_whisper"] == 80  # control: the fact is large-v3's alone


LIKE = f"""
import sys, numpy as np
sys.path.insert(0, {str(PROJECT)!r})
from transformers import AutoModel, AutoTokenizer, WhisperProcessor
import speech_lm
from speech_lm import SpeechLMConfig, SpeechLMModel
report("control", fails(lambda: WhisperProcessor.from_pretrained(LIKE_DIR)))  # what sending it to DIR did
INSTALL()
tokenizer = AutoTokenizer.from_pretrained("model_ckpt")
config = SpeechLMConfig.from_pretrained("model_ckpt")
model = SpeechLMModel.from_pretrained("model_ckpt", config=config)
report("like", [config.audio_num_codebooks, config.text_config.hidden_size, config.audio_in_token_idx,
                tokenizer.convert_tokens_to_ids(config.audio_in_token), model.get_input_embeddings().weight.shape[0]])
processor = WhisperProcessor.from_pretrained("openai/whisper-large-v3")
report("whisper", processor.feature_extractor.feature_size)
report("clip", AutoModel.from_pretrained("openai/clip-vit-base-patch32").config.model_type)
"""


def test_like_shapes_its_own_family_and_leaves_the_others_theirs(tmp_path):
    import subprocess
    import sys

    like = tmp_path / "speech-ckpt"
    # A small local checkpoint of the project's own type, no tokenizer in it (what a user's model_ckpt has).
    code = (f"import sys; sys.path.insert(0, {str(PROJECT)!r}); from speech_lm import SpeechLMConfig; "
            "SpeechLMConfig(audio_num_codebooks=4, text_config={'model_type': 'llama', 'hidden_size': 64, "
            "'intermediate_size': 128, 'num_hidden_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 2}"
            f").save_pretrained({str(like)!r})")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert json.loads((like / "config.json").read_text())["model_type"] == "speech_lm"
    (tmp_path / "run").mkdir()
    results, standins = run_snippet(LIKE.replace("LIKE_DIR", repr(str(like))), tmp_path / "run", settings={"like": str(like)})
    assert results["control"] == "OSError"  # DIR has no preprocessor_config.json
    codebooks, hidden, audio_in, tokenized, rows = results["like"]
    assert codebooks == 4 and hidden == 32  # DIR's config (4 codebooks, not the class's 8), shrunk
    assert audio_in == tokenized and audio_in < rows == VOCAB_SIZE + 4
    assert results["whisper"] == 128 and results["clip"] == "clip"
    details = {(s["what"], s["detail"]) for s in standins}
    assert ("tokenizer", "model_ckpt -> the tiny tokenizer (the --like directory has none) with speech_lm's special "
            "tokens (<|audio_bos|>, <|audio_eos|>, <|AUDIO|>, <|AUDIO_OUT|>) (an unknown name: --like's model "
            "type) (ChatML template)") in details
    assert ("config", "model_ckpt -> --like config (speech_lm), shrunk; 7 special-token ids mapped into the tiny "
            "vocabulary (asked for by SpeechLMConfig)") in details
    assert ("processor", "openai/whisper-large-v3 -> tiny whisper stand-in (128 mel bins, as large-v3 has)") in details
    assert ("model", "openai/clip-vit-base-patch32 -> tiny CLIPModel (clip, ") in {(w, d[:len("openai/clip-vit-base-patch32 -> tiny CLIPModel (clip, ")]) for w, d in details}


FACTS = """
import torch
from transformers import AutoModel, AutoModelForSeq2SeqLM
from peft import LoraConfig, get_peft_model
INSTALL()
hubert = AutoModel.from_pretrained("facebook/hubert-base-ls960")  # what an audio codec loads for its semantic features
other = AutoModel.from_pretrained("acme/hubert-distilled")
report("hubert", [type(hubert).__name__, list(hubert(torch.zeros(1, 16000)).last_hidden_state.shape),
                  sum(p.numel() for p in hubert.parameters()), list(other(torch.zeros(1, 16000)).last_hidden_state.shape)])
flan = AutoModelForSeq2SeqLM.from_pretrained("google/flan-t5-base")
plain = AutoModelForSeq2SeqLM.from_pretrained("google-t5/t5-small")
report("flan", [flan.config.is_gated_act,
                type(get_peft_model(flan, LoraConfig(r=2, target_modules=["wi_0", "wi_1"]))).__name__])
report("plain", [plain.config.is_gated_act, fails(lambda: get_peft_model(plain, LoraConfig(r=2, target_modules=["wi_0"])))])
"""


def test_names_fix_shapes_their_family_defaults_do_not_have(tmp_path):
    results, standins = run_snippet(FACTS, tmp_path)
    name, shape, parameters, other = results["hubert"]
    # Not a text BERT ("hubert" holds "bert"); 768 wide, as code around HuBERT-base hard-codes (an audio
    # codec's semantic_dim = 768), the rest tiny. Control: a HuBERT the name says nothing about is 32 wide.
    assert name == "HubertModel" and shape == [1, 49, 768] and parameters < 15_000_000
    assert other == [1, 49, 32]
    assert "facebook/hubert-base-ls960 -> tiny HubertModel (hubert, 768 wide, as the base model is, " in "\n".join(s["detail"] for s in standins)
    assert results["flan"] == [True, "PeftModel"]  # Flan-T5's gated feed-forward: wi_0/wi_1 exist
    assert results["plain"][0] is False and results["plain"][1] is not None  # control: T5 v1.0 has `wi` alone
    details = {s["detail"] for s in standins if s["what"] == "model"}
    assert any(d.startswith("google/flan-t5-base -> tiny T5ForConditionalGeneration") for d in details)


def test_token_plan_units():
    from lora_codemod.smoke.child import families
    from lora_codemod.smoke.child.tiny_model import BOS, EOS, PAD

    values = {"pad_token_id": 128001, "bos_token_id": 128000, "eos_token_id": [128001, 128009], "vocab_size": 128256,
              "image_token": "<image>", "image_token_index": 128200, "video_token_id": 151656, "other_video_id": 151656,
              "layer_idx": 3, "text_config": {"model_type": "llama", "vocab_size": 128256, "pad_token_id": 128001,
                                              "boi_token_index": 260000}}
    plan = families.TokenPlan()
    plan.collect(values)
    out = families._shrink(values, plan, keep_vocab=False)
    assert sorted(plan.tokens) == ["<image>", "<|boi_260000|>", "<|video_151656|>"]
    assert (out["pad_token_id"], out["bos_token_id"], out["eos_token_id"]) == (PAD, BOS, EOS)
    assert out["image_token_index"] == plan.tokens["<image>"] == VOCAB_SIZE
    assert out["video_token_id"] == plan.tokens["<|video_151656|>"] and out["other_video_id"] == 151656  # `_id` alone: not a token id
    assert out["layer_idx"] == 3  # inside the vocabulary already: kept
    assert out["vocab_size"] == out["text_config"]["vocab_size"] == VOCAB_SIZE + 3
    assert out["text_config"]["boi_token_index"] == plan.tokens["<|boi_260000|>"] and out["text_config"]["pad_token_id"] == PAD
    assert sorted(plan.tokens.values()) == [VOCAB_SIZE, VOCAB_SIZE + 1, VOCAB_SIZE + 2]
    # Control: with the user's own tokenizer (--like with one) nothing is mapped.
    assert families._shrink(values, None, keep_vocab=True)["image_token_index"] == 128200
    assert families.type_in_name("bosonai/higgs-audio-v2-generation-3B-base", ["higgs_audio", "higgs_audio_encoder"]) == "higgs_audio"
    assert families.type_in_name("org/higgsaudio", ["higgs_audio"]) is None
    assert families.name_facts("openai/whisper-large-v3-turbo", "whisper")[0] == {"num_mel_bins": 128}
    assert families.name_facts("openai/whisper-large-v2", "whisper")[0] == {}


def test_a_crash_after_a_class_defaults_stand_in_suggests_like():
    from lora_codemod.smoke.device import plan_launch
    from lora_codemod.smoke.verdict import FixSummary, SmokeRun

    standin = {"what": "config", "ranks": [0], "detail": "model_ckpt -> tiny higgs_audio stand-in: HiggsAudioConfig's "
               "defaults, shrunk; 8 special-token ids mapped into the tiny vocabulary (asked for by HiggsAudioConfig)"}
    run = SmokeRun(label="patched", script="t.py", plan=plan_launch("cpu", 1, False, 0), command=[], output_dir="/o",
                   adapter_dir="/o", fix=FixSummary(applied=True), exit_code=1, standins=[standin])
    assert run.hints() == ["model_ckpt got a stand-in made from HiggsAudioConfig's defaults: where your checkpoint's "
                           "config differs from them (a shape mismatch may come from that), pass --like a directory with "
                           "its config.json"]
    run.exit_code = 0  # control: a run that did not crash needs no hint
    assert run.hints() == []
    run.exit_code, run.standins = 1, [{"what": "config", "ranks": [0], "detail": "Qwen/Qwen2-0.5B -> tiny qwen2 stand-in"}]
    assert run.hints() == []  # control: transformers' own family defaults
