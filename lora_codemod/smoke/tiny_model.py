"""A tiny Llama-style causal LM and a matching fast tokenizer, built offline from a config.

Small enough to train two steps in a second on a CPU, real enough that Trainer, PEFT and DDP
take their ordinary code paths.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")
# A closed, fixed vocabulary: the tokenizer needs no training and is identical on every run.
WORDS = (
    "the a an and or but if then else of to in on at by for with from as is are was were be been "
    "it this that these those i you he she we they me him her us them my your his our their "
    "model adapter lora rank train training trainer save saved saving load loaded weight weights "
    "layer layers token tokens text audio data batch step steps loss learning rate epoch output "
    "input hidden size small tiny test run runs ran good bad fast slow new old one two three four "
    "five six seven eight nine ten zero first last next time day night world hello cat dog bird "
    "fish tree house car road river sea sun moon star red green blue black white big long short "
    "high low up down left right yes no not all some many more most other same each every can "
    "will would should could may might must do does did have has had make makes made go goes went"
).split()
PUNCTUATION = tuple(".,!?;:'\"()-")
VOCAB = (*SPECIAL_TOKENS, *WORDS, *PUNCTUATION, *"abcdefghijklmnopqrstuvwxyz", *"0123456789")

MAX_LENGTH = 128


@dataclass(frozen=True)
class TinyModelInfo:
    path: Path
    parameters: int
    bytes_on_disk: int
    seconds: float


def build_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(VOCAB)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        model_max_length=MAX_LENGTH,
    )


def build_model(vocab_size: int = len(VOCAB), seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_LENGTH,
        pad_token_id=SPECIAL_TOKENS.index("<pad>"),
        bos_token_id=SPECIAL_TOKENS.index("<s>"),
        eos_token_id=SPECIAL_TOKENS.index("</s>"),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)  # same weights on every run: runs and tests are reproducible
    return LlamaForCausalLM(config)


@contextlib.contextmanager
def quiet_progress_bars():
    """No transformers progress bars for our own tiny loads and saves (they would mix with reports)."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def write_tiny_model(directory: str | Path) -> TinyModelInfo:
    """Write model (safetensors) and tokenizer to `directory` (created if missing)."""
    started = time.perf_counter()
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    model = build_model(vocab_size=len(tokenizer))
    with quiet_progress_bars():
        model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    parameters = sum(p.numel() for p in model.parameters())
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return TinyModelInfo(path, parameters, size, time.perf_counter() - started)
