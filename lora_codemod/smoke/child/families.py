"""Tiny stand-ins for hub models: guess the family from a name, shrink its config, write a directory.

Runs in the child (with the child's transformers), so the directory it writes is one that
transformers version reads. A stand-in keeps the family's module names (`q_proj`, `c_attn`,
`qkv_proj`, ...), so a script's `target_modules` resolve as they would on the real model.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

# (pattern on the lower-cased name, model_type), first match wins; "llama" when nothing matches
# or the installed transformers does not know the type.
FAMILY_PATTERNS = (
    (r"qwen3", "qwen3"),
    (r"qwen", "qwen2"),
    (r"mixtral", "mixtral"),
    (r"mistral|zephyr", "mistral"),
    (r"gemma-?2([-_.]|$)", "gemma2"),
    (r"gemma", "gemma"),
    (r"phi-?3|phi-?4", "phi3"),
    (r"phi", "phi"),
    (r"distilgpt2|gpt2|dialogpt", "gpt2"),
    (r"gpt-?neox|pythia", "gpt_neox"),
    (r"gpt-?j", "gptj"),
    (r"(^|[/_-])opt([_-]|$)", "opt"),
    (r"bloom", "bloom"),
    (r"falcon", "falcon"),
    (r"starcoder2", "starcoder2"),
    (r"t5", "t5"),
    (r"bart", "bart"),
    (r"whisper", "whisper"),
    (r"hubert", "hubert"),  # before bert: HuBERT is a speech encoder, not a text one
    (r"wavlm", "wavlm"),
    (r"wav2vec-?2|xls-?r|/mms-", "wav2vec2"),
    (r"siglip", "siglip"),
    (r"clip", "clip"),
    (r"roberta", "roberta"),
    (r"bert", "bert"),
    (r"llama|vicuna|alpaca|deepseek|smollm|tinyllama|yi-|baichuan|internlm", "llama"),
)

# Size attributes, wherever they appear (top level or sub-configs), and their tiny values.
SMALL = {
    "hidden_size": 32, "n_embd": 32, "d_model": 32, "dim": 32, "embed_dim": 32, "projection_dim": 32,
    "intermediate_size": 64, "n_inner": 64, "ffn_dim": 64, "d_ff": 64, "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64, "hidden_dim": 64, "ffn_hidden_size": 64, "word_embed_proj_dim": 32, "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32,
    "num_hidden_layers": 2, "n_layer": 2, "num_layers": 2, "n_layers": 2, "num_decoder_layers": 2,
    "encoder_layers": 2, "decoder_layers": 2,
    "num_attention_heads": 4, "n_head": 4, "n_heads": 4, "num_heads": 4,
    "encoder_attention_heads": 4, "decoder_attention_heads": 4,
    "num_key_value_heads": 2, "num_kv_heads": 2, "head_dim": 8, "d_kv": 8,
    "num_local_experts": 2, "num_experts": 2, "num_experts_per_tok": 1,
    "image_size": 32, "patch_size": 8,
}
# The same sizes under a prefix, as custom configs name them (`audio_ffn_hidden_size`,
# `rq_transformer_num_hidden_layers`): (suffix, tiny value).
SMALL_SUFFIXES = (
    ("_hidden_size", 32), ("_intermediate_size", 64), ("_num_hidden_layers", 2), ("_num_layers", 2),
    ("_num_attention_heads", 4), ("_num_key_value_heads", 2),
)
CAPPED = {"max_position_embeddings": 1024, "n_positions": 1024, "n_ctx": 1024}
# Per-layer widths given as lists (speech encoders' convolutional feature extractors): each shrunk.
SMALL_LISTS = {"conv_dim": 32, "tdnn_dim": 32}
LAYER_LISTS = ("layer_types",)
# Token ids the tiny tokenizer has: (id key, which of its ids).
TOKEN_ID_KEYS = {"pad_token_id": "pad", "bos_token_id": "bos", "eos_token_id": "eos", "decoder_start_token_id": "pad",
                 "unk_token_id": "unk"}
# Any other special-token id (`audio_in_token_idx`, `image_token_index`, `audio_eos_token_id`): its stem and suffix.
TOKEN_ID_PATTERN = re.compile(r"^(?P<stem>.+?)_(?:token_id|token_idx|token_index|idx|index)$")
# Token strings the tiny tokenizer already has under its own names (never added twice).
STANDARD_TOKEN_KEYS = ("pad_token", "bos_token", "eos_token", "unk_token")
IMAGE_SIZE = 32

# Facts a name says about shapes that its family's defaults do not have, and that code outside the
# model reads from elsewhere (a Whisper processor's mel bins, a project's own audio-encoder config):
# (pattern on the lower-cased name, model_type, attributes, what the report says).
NAME_FACTS = (
    (r"whisper.*large-?v3", "whisper", {"num_mel_bins": 128}, "128 mel bins, as large-v3 has"),
    # Speech encoders: code around them hard-codes their width (an audio codec's `semantic_dim = 768`).
    (r"(hubert|wavlm|wav2vec-?2)[-_]?base", "hubert", {"hidden_size": 768}, "768 wide, as the base model is"),
    (r"(hubert|wavlm|wav2vec-?2)[-_]?base", "wavlm", {"hidden_size": 768}, "768 wide, as the base model is"),
    (r"(hubert|wavlm|wav2vec-?2)[-_]?base", "wav2vec2", {"hidden_size": 768}, "768 wide, as the base model is"),
    (r"(hubert|wavlm|wav2vec-?2)[-_]?(large|xls-?r)", "hubert", {"hidden_size": 1024}, "1024 wide, as the large model is"),
    (r"(hubert|wavlm|wav2vec-?2)[-_]?(large|xls-?r)", "wavlm", {"hidden_size": 1024}, "1024 wide, as the large model is"),
    (r"(hubert|wavlm|wav2vec-?2)[-_]?(large|xls-?r)", "wav2vec2", {"hidden_size": 1024}, "1024 wide, as the large model is"),
    (r"flan-?t5|t5-v1[._]1", "t5", {"feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "is_gated_act": True},
     "gated-GELU feed-forward (wi_0, wi_1), as T5 v1.1 and Flan-T5 have"),
)


def pattern_type(name: str, known: set[str] | None = None) -> str | None:
    """The family a name matches in FAMILY_PATTERNS, or None."""
    lowered = name.lower()
    for pattern, model_type in FAMILY_PATTERNS:
        if re.search(pattern, lowered) and (known is None or model_type in known):
            return model_type
    return None


def guess_model_type(name: str, known: set[str] | None = None) -> str:
    return pattern_type(name, known) or "llama"


def name_facts(name: str, model_type: str) -> tuple[dict, str]:
    """(attributes, what the report says) that `name` fixes for a stand-in of `model_type`."""
    lowered = name.lower()
    for pattern, family, attributes, text in NAME_FACTS:
        if family == model_type and re.search(pattern, lowered):
            return dict(attributes), text
    return {}, ""


def is_transformers_class(cls) -> bool:
    return str(getattr(cls, "__module__", "")).split(".", 1)[0] == "transformers"


def registered_custom_types() -> dict:
    """model_type -> config class, for the types a project registered itself (`AutoConfig.register`)."""
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    except Exception:
        return {}
    extra = getattr(CONFIG_MAPPING, "_extra_content", None) or {}
    return {t: c for t, c in extra.items() if isinstance(t, str) and not is_transformers_class(c)}


def _normalised(text: str) -> str:
    return re.sub(r"[-_. ]+", "_", text.lower())


def type_in_name(name: str, types) -> str | None:
    """The longest registered model type a name spells (`higgs-audio-v2` spells `higgs_audio`)."""
    lowered = _normalised(name)
    hits = [t for t in types if t and re.search(rf"(^|[^a-z0-9]){re.escape(_normalised(t))}($|[^a-z0-9])", lowered)]
    return max(hits, key=len) if hits else None


def top_level_types(custom: dict) -> list[str]:
    """The registered types that are no other registered type's sub-config (the project's model itself)."""
    nested = set()
    for config_class in custom.values():
        try:
            values = config_class().to_dict()
        except Exception:
            continue
        for value in values.values():
            if isinstance(value, dict) and value.get("model_type"):
                nested.add(value["model_type"])
    return [t for t in custom if t not in nested]


class TokenPlan:
    """Where a config's special-token ids go in the tiny vocabulary, and the tokens added for them.

    pad/bos/eos/unk (and decoder_start) take the tiny tokenizer's own ids. A token a config names
    as a string (`audio_in_token = "<|AUDIO|>"`, with `audio_in_token_idx = 128015`) is added to
    the stand-in tokenizer, and every id field of the same stem gets its id, so text the script
    tokenizes finds the id the model looks for. An id with no string that falls outside the tiny
    vocabulary gets a token of its own (one per original value). Ids already inside it are kept.
    """

    def __init__(self):
        from lora_codemod.smoke.child.tiny_model import BOS, EOS, PAD, UNK, VOCAB_SIZE

        self.base = VOCAB_SIZE
        self.fixed = {"pad": PAD, "bos": BOS, "eos": EOS, "unk": UNK}
        self.tokens: dict[str, int] = {}  # added token text -> id, in the order added
        self._values: dict[int, int] = {}
        self.mapped: dict[str, tuple] = {}  # "path.key" -> (original, new): what the report counts

    @property
    def size(self) -> int:
        return self.base + len(self.tokens)

    def token(self, text: str) -> int:
        if text not in self.tokens:
            self.tokens[text] = self.size
        return self.tokens[text]

    def collect(self, values: dict) -> None:
        """First pass: every token string, then every id that needs a token of its own."""
        for key, value in values.items():
            if isinstance(value, dict) and (key.endswith("_config") or "model_type" in value):
                self.collect(value)
            elif key.endswith("_token") and key not in STANDARD_TOKEN_KEYS and _token_text(value):
                self.token(value)
        for key, value in values.items():
            if key in TOKEN_ID_KEYS or not _is_id(value):
                continue
            match = TOKEN_ID_PATTERN.match(key)
            if match and not _token_text(values.get(match.group("stem") + "_token")):
                for original in (value if isinstance(value, list) else [value]):
                    if original >= self.base and original not in self._values:
                        self._values[original] = self.token(f"<|{match.group('stem')}_{original}|>")

    def new_id(self, key: str, value, values: dict, path: str):
        """The id `key` gets in the tiny vocabulary (`value` unchanged when it needs none)."""
        if not _is_id(value):
            return value
        if key in TOKEN_ID_KEYS:
            new = self.fixed[TOKEN_ID_KEYS[key]]
        else:
            match = TOKEN_ID_PATTERN.match(key)
            if not match:
                return value
            text = values.get(match.group("stem") + "_token")
            if _token_text(text):
                new = self.tokens.get(text, value)
            elif isinstance(value, list):
                new = [self._values.get(v, v) for v in value]
            else:
                new = self._values.get(value, value)
        if isinstance(value, list) and not isinstance(new, list):
            new = new if key in TOKEN_ID_KEYS else [new for _ in value]
        if new != value:
            self.mapped[f"{path}{key}"] = (value, new)
        return new


def _is_id(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, list) and bool(value) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _token_text(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and not any(c.isspace() for c in value)


def _small_value(key: str):
    if key in SMALL:
        return SMALL[key]
    for suffix, value in SMALL_SUFFIXES:
        if key.endswith(suffix):
            return value
    return None


def _shrink(values: dict, plan: TokenPlan | None, keep_vocab: bool, path: str = "") -> dict:
    out = dict(values)
    layers = None
    for key, value in values.items():
        small = _small_value(key)
        if isinstance(value, dict) and (key.endswith("_config") or "model_type" in value):
            out[key] = _shrink(value, plan, keep_vocab, f"{path}{key}.")
        elif small is not None and isinstance(value, int) and not isinstance(value, bool) and value > 0:
            if key in ("num_hidden_layers", "n_layer", "num_layers"):
                layers = value
            out[key] = min(value, small)
        elif key in CAPPED and isinstance(value, int) and value > CAPPED[key]:
            out[key] = CAPPED[key]
        elif key in SMALL_LISTS and isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
            out[key] = [min(v, SMALL_LISTS[key]) for v in value]
        elif key == "vocab_size" and isinstance(value, int) and plan is not None and not keep_vocab:
            out[key] = plan.size
        elif plan is not None and not keep_vocab and value is not None:
            out[key] = plan.new_id(key, value, values, path)
    for key in LAYER_LISTS:
        if layers and isinstance(out.get(key), list) and len(out[key]) == layers:
            out[key] = out[key][: out.get("num_hidden_layers", 2)]
    # Derived sizes that must stay consistent with the shrunk ones.
    if "num_key_value_heads" in out and "num_attention_heads" in out and out["num_key_value_heads"]:
        heads = out["num_attention_heads"]
        if heads % out["num_key_value_heads"]:
            out["num_key_value_heads"] = heads
    if "sliding_window" in out and isinstance(out["sliding_window"], int) and out["sliding_window"] > 1024:
        out["sliding_window"] = 1024
    out.pop("_name_or_path", None)
    out.pop("quantization_config", None)
    out.pop("auto_map", None)
    return out


def tokenizer_ids() -> dict:
    from lora_codemod.smoke.child.tiny_model import BOS, EOS, PAD, VOCAB_SIZE

    return {"size": VOCAB_SIZE, "pad": PAD, "bos": BOS, "eos": EOS}


class Shrunk:
    """A shrunk config and what the tiny tokenizer must hold for it."""

    def __init__(self, config, plan: TokenPlan | None, facts: str = ""):
        self.config = config
        self.plan = plan
        self.facts = facts  # what a name fixed ("128 mel bins, as large-v3 has")

    @property
    def extra_tokens(self) -> list[tuple[str, int]]:
        return list(self.plan.tokens.items()) if self.plan else []


def shrink(config, keep_vocab: bool = False, overrides: dict | None = None, facts: str = "") -> Shrunk:
    """A new config of the same class with every size shrunk (sub-configs included) and every
    special-token id inside the tiny vocabulary (`keep_vocab`: the user's own tokenizer is used)."""
    values = config.to_dict()
    plan = None if keep_vocab else TokenPlan()
    if plan is not None:
        plan.collect(values)
    shrunk = _shrink(values, plan, keep_vocab)
    shrunk.update(overrides or {})
    shrunk.pop("transformers_version", None)
    return Shrunk(type(config).from_dict(shrunk), plan, facts)


def shrink_config(config, keep_vocab: bool = False):
    """A new config of the same class with every size attribute shrunk (sub-configs included)."""
    return shrink(config, keep_vocab).config


def family_standin(model_type: str, name: str = "", overrides: dict | None = None, facts: str = "") -> Shrunk:
    """Shrunk defaults of transformers' own config for `model_type`, with what `name` fixes
    (or the `overrides` given)."""
    from transformers import AutoConfig

    if overrides is None:
        overrides, facts = name_facts(name, model_type)
    return shrink(AutoConfig.for_model(model_type), overrides=overrides, facts=facts)


def family_config(name: str):
    """Shrunk config of the family guessed from `name` (transformers' own defaults for that type)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    return family_standin(guess_model_type(name, set(CONFIG_MAPPING.keys())), name).config


def class_standin(config_class) -> Shrunk:
    """Shrunk defaults of a config class (a project's own, or a concrete model class's)."""
    return shrink(config_class())


def config_for_class(config_class):
    """Shrunk defaults of a concrete model class's own config class (LlavaConfig, CLIPVisionConfig)."""
    return class_standin(config_class).config


def default_architecture(model_type: str) -> str | None:
    """The class a hub config of this type names in `architectures` (causal LM first)."""
    from transformers.models.auto import modeling_auto

    for mapping in ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
                    "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES", "MODEL_MAPPING_NAMES"):
        names = getattr(modeling_auto, mapping, {})
        if model_type in names:
            value = names[model_type]
            return value[0] if isinstance(value, (list, tuple)) else value
    return None


def write_standin_dir(directory: Path, config, like_dir: str | None, extra_tokens=()) -> Path:
    """config.json, a tokenizer (the user's with --like, else the tiny one, holding `extra_tokens`:
    (text, id) pairs the config's special-token ids point at) and processor configs."""
    directory.mkdir(parents=True, exist_ok=True)
    if not getattr(config, "architectures", None):
        architecture = default_architecture(config.model_type)
        if architecture:
            config.architectures = [architecture]
    config.save_pretrained(directory)
    copied = False
    if like_dir:
        for entry in os.listdir(like_dir):
            lowered = entry.lower()
            if ("token" in lowered or lowered in ("vocab.json", "merges.txt", "vocab.txt", "spiece.model",
                                                   "chat_template.jinja", "chat_template.json")
                    or lowered.endswith(".tiktoken")):
                source = os.path.join(like_dir, entry)
                if os.path.isfile(source):
                    (directory / entry).write_bytes(Path(source).read_bytes())
                    copied = copied or entry in ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")
    if not copied:
        from lora_codemod.smoke.child.tiny_model import write_tokenizer

        extra = [text for text, _ in extra_tokens]
        write_tokenizer(directory, extra_tokens=extra)
        family_tokenizer = family_tokenizer_class(getattr(config, "model_type", ""))
        if family_tokenizer and tokenizer_loads(directory, family_tokenizer):
            write_tokenizer(directory, family_tokenizer, extra_tokens=extra)
    _write_processor_config(directory, config)
    return directory


def _mel_bins(config) -> int | None:
    """num_mel_bins of the config or of any sub-config (a project's own audio-encoder config)."""
    value = getattr(config, "num_mel_bins", None)
    if isinstance(value, int):
        return value
    for sub in vars(config).values():
        if hasattr(sub, "to_dict") and hasattr(sub, "model_type"):
            value = _mel_bins(sub)
            if value:
                return value
    return None


def _write_processor_config(directory: Path, config) -> None:
    """preprocessor_config.json for image and audio families, sized like the shrunk config."""
    model_type = getattr(config, "model_type", "")
    vision = getattr(config, "vision_config", None)
    if model_type in ("clip", "siglip", "clip_vision_model", "siglip_vision_model") or vision is not None:
        size = getattr(vision, "image_size", None) or getattr(config, "image_size", IMAGE_SIZE)
        processor = {
            "image_processor_type": "SiglipImageProcessor" if "siglip" in model_type else "CLIPImageProcessor",
            "do_resize": True, "size": {"shortest_edge": size} if "siglip" not in model_type else {"height": size, "width": size},
            "do_center_crop": "siglip" not in model_type, "crop_size": {"height": size, "width": size},
            "do_normalize": True, "do_rescale": True, "rescale_factor": 1 / 255,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3,
        }
        (directory / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    elif model_type == "whisper" or _mel_bins(config):
        processor = {
            "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": _mel_bins(config) or 80,
            "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30, "n_fft": 400,
            "padding_side": "right", "padding_value": 0.0, "return_attention_mask": False,
        }
        (directory / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))


def family_tokenizer_class(model_type: str) -> str | None:
    """The class a real tokenizer of this family names, on transformers 4.x (None on 5.x).

    On 4.x, `AutoTokenizer.from_pretrained(name, use_fast=False)` gives the family's slow class
    (`LlamaTokenizer`, with its `legacy` flag; `GPT2Tokenizer` reading vocab.json/merges.txt), and
    `use_fast=True` its fast class; scripts test for these (`isinstance(tokenizer, LlamaTokenizer)`,
    `tokenizer.legacy`). Transformers 5 has one class per family, and its family classes rebuild the
    vocabulary from their own files, so there the stand-in stays a plain tokenizer.json tokenizer.
    """
    from lora_codemod.smoke.child.tiny_model import _transformers_major

    if _transformers_major() >= 5:
        return None
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES

    names = TOKENIZER_MAPPING_NAMES.get(model_type)
    if not names:
        return None
    slow, fast = (list(names) + [None, None])[:2]
    return slow or fast


def tokenizer_loads(directory: Path, tokenizer_class: str) -> bool:
    """Whether a stand-in tokenizer named `tokenizer_class` loads, slow and fast, with every id
    inside the embedding (else the stand-in keeps the plain fast tokenizer)."""
    import shutil
    import tempfile

    from transformers import AutoTokenizer

    from lora_codemod.smoke.child.tiny_model import VOCAB_SIZE, write_tokenizer

    probe = Path(tempfile.mkdtemp(prefix="tokenizer-", dir=directory.parent))
    try:
        write_tokenizer(probe, tokenizer_class)
        for use_fast in (False, True):
            tokenizer = AutoTokenizer.from_pretrained(str(probe), use_fast=use_fast)
            ids = tokenizer("Hello world 1289, the model: what?\n<|im_start|>user").input_ids
            if not ids or max(ids) >= VOCAB_SIZE or min(ids) < 0:
                return False
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(probe, ignore_errors=True)
