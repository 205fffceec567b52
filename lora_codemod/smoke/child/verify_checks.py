"""The `verify` checks for adapters that look complete but are lost in other ways.

Each function here reads what `verify` has already loaded (tensor shapes, the lora_B values,
the directory) and adds its rows to the result: key prefixes that make the adapter a silent
no-op, a lora_B with only 1/N of its rows trained (FSDP2 keeping rank 0's shard), a tokenizer
with added tokens whose embeddings the adapter does not hold, an adapter saved under a
non-default name, and (with the base model) lora_B tensors still at their initial value.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

PASS, WARN, FAIL = "pass", "warn", "fail"

# (check name, pattern on a tensor key, what saved it). The adapter's keys are matched against
# the PEFT model's module names at load time; a key under one of these prefixes matches none,
# so the adapter loads with a "missing keys" warning and keeps its initial weights.
WRAPPER_PREFIXES = (
    ("no torch.compile prefix", re.compile(r"(?:^|\.)_orig_mod\."), "'_orig_mod.'", "saved from a torch.compile'd module"),
    (
        "no DDP prefix",
        # DDP wraps the PEFT model from outside; a wrapper's own attribute named `module` (inside
        # base_model.model.) is a legitimate module path and is not matched.
        re.compile(r"^module\."),
        "'module.'",
        "saved from the DistributedDataParallel (or DataParallel) wrapper, not the model inside it",
    ),
    ("no FSDP prefix", re.compile(r"(?:^|\.)_fsdp_wrapped_module\."), "'_fsdp_wrapped_module.'", "saved from an FSDP-wrapped module"),
)
_BASE_LAYER = re.compile(r"(?:^|\.)base_layer\.")
ROW_SHARDS = (2, 4, 8)


def check_key_prefixes(result, shapes: dict) -> None:
    keys = list(shapes)
    found = False
    for name, pattern, prefix, origin in WRAPPER_PREFIXES:
        hits = [k for k in keys if pattern.search(k)]
        if hits:
            found = True
            result.add(
                name,
                FAIL,
                f"keys carry the {prefix} prefix ({origin}), e.g. {hits[0]}: they match no module of the "
                "PEFT model, so the adapter loads with a 'missing keys' warning and changes nothing",
                f"{len(hits)} of {len(keys)} keys",
            )
    base_layer = [k for k in keys if _BASE_LAYER.search(k)]
    if base_layer:
        found = True
        result.add(
            "no base_layer weights",
            FAIL,
            f"the weights file holds base_layer weights, e.g. {base_layer[0]}: the full state dict of the "
            "PEFT model (base weights included) was saved in place of the adapter",
            f"{len(base_layer)} of {len(keys)} keys",
        )
    if not found:
        result.add("no wrapper prefixes", PASS, "no '_orig_mod.', 'module.', '_fsdp_wrapped_module.' or base_layer keys",
                   f"{len(keys)} keys")


def nonzero_rows(tensor) -> int:
    import torch

    if tensor.dim() < 2:
        return int(bool(torch.any(tensor != 0)))
    return int(torch.any(tensor.reshape(tensor.shape[0], -1) != 0, dim=1).sum())


def _shard_fraction(rows: int, total: int) -> int | None:
    """N when `rows` non-zero rows out of `total` are about 1/N of them (N in ROW_SHARDS)."""
    if rows == 0 or rows >= total:
        return None
    for shards in ROW_SHARDS:
        if total >= 2 * shards and abs(rows - total / shards) <= max(1.0, 0.02 * total):
            return shards
    return None


def check_row_fraction(result, b_tensors: dict) -> None:
    """FSDP2 shards each weight by rows; a save that kept rank 0's shard leaves 1/N of lora_B's rows non-zero."""
    counted = {k: (nonzero_rows(t), int(t.shape[0])) for k, t in b_tensors.items() if t.dim() >= 2}
    partial = {k: (rows, total, _shard_fraction(rows, total)) for k, (rows, total) in counted.items()}
    partial = {k: v for k, v in partial.items() if v[2] is not None}
    trained = [k for k, (rows, _) in counted.items() if rows]
    if not trained:
        return  # every lora_B is zero: the "lora_B trained" row says so
    if partial:
        key, (rows, total, _) = next(iter(sorted(partial.items())))
        fractions = sorted({f"1/{v[2]}" for v in partial.values()})
        result.add(
            "lora_B rows trained",
            WARN,
            f"{len(partial)} lora_B tensor(s) are non-zero in only about {' or '.join(fractions)} of their rows "
            f"(e.g. {key}: {rows} of {total} rows, {rows / total:.3f}): the FSDP2 symptom of saving only "
            "rank 0's shard of each weight",
            f"{rows}/{total} = {rows / total:.3f} of rows",
        )
    else:
        result.add("lora_B rows trained", PASS, "no trained lora_B is non-zero in only 1/2, 1/4 or 1/8 of its rows",
                   f"{len(trained)} lora_B")


# ------------------------------------------------------------------ added tokens


def tokenizer_size(directory: Path) -> tuple[int, str] | None:
    """(highest token id + 1, file it came from) from a tokenizer saved in DIRECTORY, if any."""
    path = directory / "tokenizer.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            vocab = (data.get("model") or {}).get("vocab") or {}
            ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab)))
            ids += [int(t["id"]) for t in data.get("added_tokens") or [] if "id" in t]
            ids = [i for i in ids if isinstance(i, int)]
            if ids:
                return max(ids) + 1, path.name
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
            pass
    path = directory / "tokenizer_config.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            ids = [int(i) for i in (data.get("added_tokens_decoder") or {})]
            if ids:
                return max(ids) + 1, path.name  # the highest added id: at least this many tokens
        except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError):
            pass
    return None


def _vocab_of_config(path: Path) -> int | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    for section in (data, data.get("text_config") or {}):
        value = section.get("vocab_size") if isinstance(section, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def base_vocab_size(config: dict, base_model: str | None) -> tuple[int, str] | None:
    """The base model's vocabulary: --base-model, else base_model_name_or_path on disk or in the hub cache."""
    candidates = []
    if base_model:
        candidates.append(Path(base_model) / "config.json")
    name = config.get("base_model_name_or_path")
    if isinstance(name, str) and name:
        candidates.append(Path(name) / "config.json")
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, "config.json")  # reads the local cache only
            if isinstance(cached, str):
                candidates.append(Path(cached))
        except Exception:  # not a repo id, or no hub client: nothing cached to read
            pass
    for path in candidates:
        if path.is_file():
            vocab = _vocab_of_config(path)
            if vocab is not None:
                return vocab, str(base_model or name)
    return None


def check_added_tokens(result, directories: list[Path], shapes: dict, config: dict, base_model: str | None) -> None:
    found = next(((size, d) for d in directories if (size := tokenizer_size(d)) is not None), None)
    if found is None:
        return
    (tokens, source), _ = found
    base = base_vocab_size(config, base_model)
    if base is None:
        return  # no base vocabulary on this machine to compare with
    vocab, base_name = base
    figure = f"{tokens} tokens, base vocabulary {vocab}"
    if tokens <= vocab:
        result.add("added tokens saved", PASS, f"the tokenizer ({source}) fits the base vocabulary", figure)
        return
    embeddings = [
        k for k, shape in shapes.items()
        if "trainable_tokens" in k or ("lora_" not in k and len(shape) == 2 and int(shape[0]) >= tokens)
    ]
    if embeddings:
        result.add("added tokens saved", PASS, f"the tokenizer adds tokens and the adapter holds the resized embeddings "
                   f"(e.g. {embeddings[0]})", figure)
        return
    result.add(
        "added tokens saved",
        FAIL,
        f"the tokenizer saved with the adapter ({source}) has {tokens} tokens but the base model {base_name} has a "
        f"vocabulary of {vocab}, and the adapter holds no embedding weights: the resized embed_tokens/lm_head were "
        f"not saved, so on the base model ids {vocab} and up are out of range ('index out of range in self'), and "
        "resizing the base gives them untrained rows (save with modules_to_save=['embed_tokens', 'lm_head'] or "
        "save_embedding_layers=True)",
        figure,
    )


# ------------------------------------------------------------------ adapters under a name


def named_adapters(directory: Path) -> list[Path]:
    """Sub-folders holding an adapter: PEFT saves an adapter not named 'default' to DIR/<name>/."""
    return sorted(p.parent for p in directory.glob("*/adapter_config.json"))


def report_named_adapter(result, directory: Path, found: list[Path]) -> Path:
    chosen = found[0]
    others = [p.name for p in found[1:]]
    detail = (
        f"no adapter_config.json here; the adapter named '{chosen.name}' was saved to its sub-folder "
        f"(PEFT saves adapters not named 'default' to DIR/<name>/): load it from {chosen}"
    )
    if others:
        detail += f"; the checks below are for '{chosen.name}', other adapter(s) here: {', '.join(others)}"
    result.add("adapter location", WARN, detail, f"{len(found)} named adapter(s)")
    return chosen


# ------------------------------------------------------------------ untrained, against the base model


def lora_b_snapshot(model) -> dict:
    from lora_codemod.smoke.child.shims import lora_snapshot

    return {k: v for k, v in lora_snapshot(model).items() if ".lora_B." in k}


def initial_lora_b(build_base, adapter_dir: Path, seed: int) -> dict:
    """lora_B as get_peft_model initialises it on a fresh base with the adapter's own config."""
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig.from_pretrained(str(adapter_dir))
    config.inference_mode = False
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        fresh = get_peft_model(build_base(), config)
    finally:
        torch.random.set_rng_state(state)
    return lora_b_snapshot(fresh)


def check_untrained(result, build_base, adapter_dir: Path, loaded_b: dict) -> str:
    """Compare lora_B as loaded from the adapter with its initial value (smoke's own snapshot comparison).

    Returns a note for the load row when the comparison cannot tell (a random start), else "".
    """
    from lora_codemod.smoke.child.shims import lora_changes

    initial = initial_lora_b(build_base, adapter_dir, seed=0)
    if not initial:
        return ""
    if any(bool(v.any()) for v in initial.values()):
        # A non-zero start: reproducible (PiSSA, OLoRA: computed from the base weights) or random.
        changed, _ = lora_changes(initial, _Named(initial_lora_b(build_base, adapter_dir, seed=1)))
        if changed:
            return "lora_B starts at random values with this init, so whether it trained cannot be told from the base"
    changed, total = lora_changes(initial, _Named(loaded_b))
    figure = f"{total - changed} of {total} at init"
    if changed == 0:
        result.add(
            "lora_B moved from init",
            FAIL,
            "untrained: every saved lora_B equals the value get_peft_model gives it on this base model, so no "
            "optimizer step reached the adapter",
            figure,
        )
    elif changed < total:
        result.add("lora_B moved from init", WARN, f"{total - changed} saved lora_B tensor(s) still equal their initial value",
                   figure)
    else:
        result.add("lora_B moved from init", PASS, "every saved lora_B differs from its initial value", figure)
    return ""


class _Named:
    """A snapshot dict seen through `named_parameters()`, so lora_changes can compare two snapshots."""

    def __init__(self, tensors: dict):
        self.tensors = tensors

    def named_parameters(self):
        return iter(self.tensors.items())
