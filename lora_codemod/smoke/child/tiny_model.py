"""A tiny Llama-style causal LM and a matching tokenizer, built offline from a config.

Small enough to train two steps in a second on a CPU, real enough that Trainer, PEFT and DDP
take their ordinary code paths. The tokenizer is what real scripts expect of a chat model's:
BOS/EOS/PAD/UNK, BOS prepended, a ChatML chat template, a fast `tokenizer.json` and a
sentencepiece `tokenizer.model` with the same pieces (slow `LlamaTokenizer` loads it), and no
token id past the embedding, whatever the text.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from lora_codemod.smoke.child import spm

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPACE = "\u2581"  # sentencepiece's word-boundary mark
WORDS = (
    "the a an and or but if then else of to in on at by for with from as is are was were be been "
    "it this that these those i you he she we they me him her us them my your his our their "
    "model adapter lora rank train training trainer save saved saving load loaded weight weights "
    "layer layers token tokens text audio data batch step steps loss learning rate epoch output "
    "input hidden size small tiny test run runs ran good bad fast slow new old one two three four "
    "five six seven eight nine ten zero first last next time day night world hello cat dog bird "
    "fish tree house car road river sea sun moon star red green blue black white big long short "
    "high low up down left right yes no not all some many more most other same each every can "
    "will would should could may might must do does did have has had make makes made go goes went "
    "user assistant system question answer instruction response what why how who where which "
    "please write tell give name list explain short story poem sky color"
).split()
CHARACTERS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    ".,!?;:'\"()-_/\\#=+*<>[]{}@%&$`~|^\n\t"
)
MAX_LENGTH = 1024
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _pieces() -> list[tuple[str, float, int]]:
    """(piece, score, sentencepiece type) in id order, no duplicates."""
    pieces: list[tuple[str, float, int]] = []
    seen: set[str] = set()

    def add(text: str, score: float, kind: int) -> None:
        if text not in seen:
            seen.add(text)
            pieces.append((text, score, kind))

    for index, token in enumerate(SPECIAL_TOKENS):
        kind = spm.UNKNOWN if index == UNK else (spm.USER_DEFINED if token.startswith("<|") else spm.CONTROL)
        add(token, 0.0, kind)
    add(SPACE, -2.0, spm.NORMAL)
    for word in WORDS:
        add(SPACE + word, -1.0, spm.NORMAL)
    for char in CHARACTERS:
        add(char, -5.0, spm.NORMAL)
    return pieces


PIECES = _pieces()
VOCAB_SIZE = len(PIECES)
VOCAB = tuple(p for p, _, _ in PIECES)


@dataclass(frozen=True)
class TinyModelInfo:
    path: Path
    parameters: int
    bytes_on_disk: int
    seconds: float


def _metaspace(module):
    try:
        return module.Metaspace(replacement=SPACE, prepend_scheme="always")
    except TypeError:  # tokenizers < 0.14
        return module.Metaspace(replacement=SPACE, add_prefix_space=True)


def build_tokenizer(extra_tokens=()):
    """`extra_tokens`: special tokens added after the vocabulary (ids VOCAB_SIZE, VOCAB_SIZE + 1, ...),
    the ones a stand-in config's special-token ids point at."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.Unigram([(p, s) for p, s, _ in PIECES], unk_id=UNK))
    backend.pre_tokenizer = _metaspace(pre_tokenizers)
    backend.decoder = _metaspace(decoders)
    bos = SPECIAL_TOKENS[BOS]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, BOS)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=SPECIAL_TOKENS[UNK],
        pad_token=SPECIAL_TOKENS[PAD],
        bos_token=bos,
        eos_token=SPECIAL_TOKENS[EOS],
        additional_special_tokens=list(SPECIAL_TOKENS[4:]),
        model_max_length=MAX_LENGTH,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    if extra_tokens:
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in extra_tokens], special_tokens=True)
        ids = tokenizer.convert_tokens_to_ids(list(extra_tokens))
        if ids != list(range(VOCAB_SIZE, VOCAB_SIZE + len(extra_tokens))):
            raise RuntimeError(f"the stand-in tokenizer's added tokens got ids {ids}")
    return tokenizer


def _byte_level() -> dict[int, str]:
    """GPT-2's map from bytes to printable characters (the alphabet of byte-level BPE files)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
    printable += list(range(ord("\u00ae"), ord("\u00ff") + 1))
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def bpe_files() -> tuple[dict[str, int], list[str]]:
    """`vocab.json` and `merges.txt` of a byte-level BPE (GPT-2, Qwen2, BART, Whisper) over the same ids.

    Slow byte-level tokenizers read these two files instead of tokenizer.json. Each piece keeps its
    id, written in GPT-2's byte alphabet (the sentencepiece word mark becomes its space character).
    There are no merges: a merge must make a token of the vocabulary from two others, and the word
    pieces' prefixes are not in it. So text is split into characters, each of them a piece, and
    ASCII text round-trips; other bytes become `<unk>`. Every id stays inside the embedding.
    """
    alphabet = _byte_level()
    vocab: dict[str, int] = {}
    for index, (piece, _, kind) in enumerate(PIECES):
        if kind == spm.NORMAL:
            piece = "".join(alphabet[b] for b in piece.replace(SPACE, " ").encode("utf-8"))
        vocab.setdefault(piece, index)
    return vocab, []


def _transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


def write_tokenizer(directory: str | Path, tokenizer_class: str = "PreTrainedTokenizerFast", extra_tokens=()) -> None:
    """tokenizer.json (fast), tokenizer.model (sentencepiece), on transformers 4.x vocab.json +
    merges.txt (byte-level BPE), all with the same ids, and the chat template.

    `tokenizer_class` is what AutoTokenizer reads: `PreTrainedTokenizerFast` (every transformers
    version knows it) unless the caller names a family's class.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    build_tokenizer(extra_tokens).save_pretrained(path)
    proto = spm.model_proto(PIECES, unk_id=UNK, bos_id=BOS, eos_id=EOS, pad_id=PAD)
    (path / "tokenizer.model").write_bytes(proto)
    (path / "spiece.model").write_bytes(proto)  # the name T5Tokenizer and friends look for
    if _transformers_major() < 5:
        # Slow byte-level tokenizers (GPT2Tokenizer, WhisperTokenizer, BartTokenizer) read only
        # these. Transformers 5 has no slow classes, and its Qwen2/GPT-2 classes would prefer
        # these files to tokenizer.json, so there they are not written.
        vocab, merges = bpe_files()
        (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{m}\n" for m in merges), encoding="utf-8")
    # Older transformers read the chat template from tokenizer_config.json only.
    config_path = path / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.setdefault("chat_template", CHAT_TEMPLATE)
    config["tokenizer_class"] = tokenizer_class
    config["add_bos_token"] = True
    config["add_eos_token"] = False
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def build_model(vocab_size: int = VOCAB_SIZE, seed: int = 0):
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
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
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
    model = build_model()
    with quiet_progress_bars():
        model.save_pretrained(path)
    write_tokenizer(path)
    parameters = sum(p.numel() for p in model.parameters())
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return TinyModelInfo(path, parameters, size, time.perf_counter() - started)


if __name__ == "__main__":  # `python -m lora_codemod.smoke.child.tiny_model DIR`: made by another interpreter
    import sys

    info = write_tiny_model(sys.argv[1])
    print(json.dumps({"path": str(info.path), "parameters": info.parameters}))
