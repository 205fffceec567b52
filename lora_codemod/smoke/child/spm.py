"""Write a sentencepiece `tokenizer.model` without sentencepiece or protobuf installed.

Slow tokenizers (`LlamaTokenizer`, `T5Tokenizer` on transformers 4.x) load a serialized
`ModelProto`. Its wire format is small enough to write by hand: a list of pieces with scores and
types, the trainer spec (model type, special ids) and a normaliser that leaves text as it is.
"""

from __future__ import annotations

import struct

# sentencepiece_model.proto: SentencePiece.Type
NORMAL, UNKNOWN, CONTROL, USER_DEFINED = 1, 2, 3, 4
UNIGRAM = 1


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int32 fields encode negatives as 10-byte varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _bytes_field(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _int_field(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def _float_field(field: int, value: float) -> bytes:
    return _key(field, 5) + struct.pack("<f", value)


def model_proto(pieces: list[tuple[str, float, int]], unk_id: int, bos_id: int, eos_id: int, pad_id: int) -> bytes:
    """Serialized ModelProto of a unigram model over `pieces` ((text, score, type) in id order)."""
    out = bytearray()
    for text, score, kind in pieces:
        body = _bytes_field(1, text.encode("utf-8")) + _float_field(2, score) + _int_field(3, kind)
        out += _bytes_field(1, body)
    trainer = (
        _int_field(3, UNIGRAM)
        + _int_field(4, len(pieces))
        + _int_field(40, unk_id)
        + _int_field(41, bos_id)
        + _int_field(42, eos_id)
        + _int_field(43, pad_id)
    )
    out += _bytes_field(2, trainer)
    # name "identity", no charsmap; add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces.
    normalizer = _bytes_field(1, b"identity") + _int_field(3, 1) + _int_field(4, 1) + _int_field(5, 1)
    out += _bytes_field(3, normalizer)
    return bytes(out)
