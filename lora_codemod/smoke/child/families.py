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
CAPPED = {"max_position_embeddings": 1024, "n_positions": 1024, "n_ctx": 1024}
LAYER_LISTS = ("layer_types",)
TOKEN_ID_KEYS = {"pad_token_id": "pad", "bos_token_id": "bos", "eos_token_id": "eos", "decoder_start_token_id": "pad"}
IMAGE_SIZE = 32


def guess_model_type(name: str, known: set[str] | None = None) -> str:
    lowered = name.lower()
    for pattern, model_type in FAMILY_PATTERNS:
        if re.search(pattern, lowered) and (known is None or model_type in known):
            return model_type
    return "llama"


def _shrink(values: dict, ids: dict | None, keep_vocab: bool) -> dict:
    out = dict(values)
    layers = None
    for key, value in values.items():
        if isinstance(value, dict) and (key.endswith("_config") or "model_type" in value):
            out[key] = _shrink(value, ids, keep_vocab)
        elif key in SMALL and isinstance(value, int) and not isinstance(value, bool) and value > 0:
            if key in ("num_hidden_layers", "n_layer", "num_layers"):
                layers = value
            out[key] = min(value, SMALL[key])
        elif key in CAPPED and isinstance(value, int) and value > CAPPED[key]:
            out[key] = CAPPED[key]
        elif key == "vocab_size" and isinstance(value, int) and ids is not None and not keep_vocab:
            out[key] = ids["size"]
        elif key in TOKEN_ID_KEYS and ids is not None and not keep_vocab and value is not None:
            out[key] = ids[TOKEN_ID_KEYS[key]]
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


def shrink_config(config, keep_vocab: bool = False):
    """A new config of the same class with every size attribute shrunk (sub-configs included)."""
    values = config.to_dict()
    shrunk = _shrink(values, tokenizer_ids(), keep_vocab)
    shrunk.pop("transformers_version", None)
    return type(config).from_dict(shrunk)


def family_config(name: str):
    """Shrunk config of the family guessed from `name` (transformers' own defaults for that type)."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = guess_model_type(name, set(CONFIG_MAPPING.keys()))
    return shrink_config(AutoConfig.for_model(model_type))


def config_for_class(config_class):
    """Shrunk defaults of a concrete model class's own config class (LlavaConfig, CLIPVisionConfig)."""
    return shrink_config(config_class())


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


def write_standin_dir(directory: Path, config, like_dir: str | None) -> Path:
    """config.json, a tokenizer (the user's with --like, else the tiny one) and processor configs."""
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

        write_tokenizer(directory)
        family_tokenizer = family_tokenizer_class(getattr(config, "model_type", ""))
        if family_tokenizer and tokenizer_loads(directory, family_tokenizer):
            write_tokenizer(directory, family_tokenizer)
    _write_processor_config(directory, config)
    return directory


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
    elif model_type == "whisper":
        processor = {
            "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": getattr(config, "num_mel_bins", 80),
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
