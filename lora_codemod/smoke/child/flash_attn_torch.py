"""flash-attn's attention functions computed with PyTorch, for the import stand-in where flash-attn
is not installed.

Scripts that patch attention with flash-attn (FastChat's `llama_flash_attn_monkey_patch`, LLaVA's)
call these few functions; computing the same attention with `scaled_dot_product_attention` lets
such a run train and save as it would, slower. Layouts follow flash-attn 2: `(batch, seqlen,
heads, headdim)`, packed `qkv` `(batch, seqlen, 3, heads, headdim)`, variable-length inputs
`(total_tokens, heads, headdim)` with `cu_seqlens`; grouped-query heads are repeated; `causal`
is aligned to the bottom right as flash-attn does when the lengths differ. What these do not
reproduce (sliding windows, ALiBi, softcap, returned probabilities) fails with a clear error.
`unpad_input` returns the four values of the long-standing API that such scripts unpack.
"""

from __future__ import annotations

NOT_REPRODUCED = "lora-codemod smoke computes flash-attn's plain attention only (flash-attn is not installed)"
on_call = None  # set by the import stand-in: on_call(name) records that the script used `name`


def _used(name: str) -> None:
    if on_call is not None:
        on_call(name)


def _check(window_size=(-1, -1), alibi_slopes=None, softcap=0.0, return_attn_probs=False, **_ignored) -> None:
    if tuple(window_size or (-1, -1)) != (-1, -1) or alibi_slopes is not None or softcap or return_attn_probs:
        raise RuntimeError(f"{NOT_REPRODUCED}: window_size, alibi_slopes, softcap and return_attn_probs are not")


def _attention(q, k, v, dropout_p: float, softmax_scale, causal: bool):
    """q (batch, sq, heads, dim), k/v (batch, sk, kv_heads, dim) -> (batch, sq, heads, dim)."""
    import torch
    import torch.nn.functional as F

    heads, kv_heads = q.shape[2], k.shape[2]
    if kv_heads != heads:
        k = k.repeat_interleave(heads // kv_heads, dim=2)
        v = v.repeat_interleave(heads // kv_heads, dim=2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    sq, sk = q.shape[2], k.shape[2]
    mask = None
    if causal and sq != sk:  # flash-attn aligns the causal mask to the bottom right corner
        mask = torch.ones(sq, sk, dtype=torch.bool, device=q.device).tril(sk - sq)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                         is_causal=causal and mask is None, scale=softmax_scale)
    return out.transpose(1, 2)


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, *args, **kwargs):
    _check(**kwargs)
    _used("flash_attn_func")
    return _attention(q, k, v, dropout_p, softmax_scale, causal)


def flash_attn_qkvpacked_func(qkv, dropout_p=0.0, softmax_scale=None, causal=False, *args, **kwargs):
    _check(**kwargs)
    _used("flash_attn_qkvpacked_func")
    q, k, v = qkv.unbind(dim=2)
    return _attention(q, k, v, dropout_p, softmax_scale, causal)


def flash_attn_kvpacked_func(q, kv, dropout_p=0.0, softmax_scale=None, causal=False, *args, **kwargs):
    _check(**kwargs)
    _used("flash_attn_kvpacked_func")
    k, v = kv.unbind(dim=2)
    return _attention(q, k, v, dropout_p, softmax_scale, causal)


def _varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, dropout_p, softmax_scale, causal):
    import torch

    starts_q, starts_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    pieces = []
    for i in range(len(starts_q) - 1):
        qi = q[starts_q[i]:starts_q[i + 1]].unsqueeze(0)
        ki = k[starts_k[i]:starts_k[i + 1]].unsqueeze(0)
        vi = v[starts_k[i]:starts_k[i + 1]].unsqueeze(0)
        pieces.append(_attention(qi, ki, vi, dropout_p, softmax_scale, causal).squeeze(0))
    return torch.cat(pieces, dim=0)


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None,
                           dropout_p=0.0, softmax_scale=None, causal=False, *args, **kwargs):
    _check(**kwargs)
    _used("flash_attn_varlen_func")
    return _varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, dropout_p, softmax_scale, causal)


def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen=None, dropout_p=0.0, softmax_scale=None,
                                     causal=False, *args, **kwargs):
    _check(**kwargs)
    _used("flash_attn_varlen_qkvpacked_func")
    q, k, v = qkv.unbind(dim=1)
    return _varlen(q, k, v, cu_seqlens, cu_seqlens, dropout_p, softmax_scale, causal)


def flash_attn_varlen_kvpacked_func(q, kv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None,
                                    dropout_p=0.0, softmax_scale=None, causal=False, *args, **kwargs):
    _check(**kwargs)
    _used("flash_attn_varlen_kvpacked_func")
    k, v = kv.unbind(dim=1)
    return _varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, dropout_p, softmax_scale, causal)


# ---------------------------------------------------------------- flash_attn.bert_padding


def index_first_axis(tensor, indices):
    """Rows `indices` of a tensor whose first axis is (batch * seqlen)."""
    return tensor[indices]


def unpad_input(hidden_states, attention_mask, *args):
    """(tokens of the unmasked positions, their flat indices, cu_seqlens, max_seqlen)."""
    import torch
    import torch.nn.functional as F

    seqlens = attention_mask.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(attention_mask.flatten(), as_tuple=False).flatten()
    max_seqlen = int(seqlens.max().item()) if seqlens.numel() else 0
    cu_seqlens = F.pad(torch.cumsum(seqlens, dim=0, dtype=torch.int32), (1, 0))
    flat = hidden_states.reshape(-1, *hidden_states.shape[2:])
    return flat[indices], indices, cu_seqlens, max_seqlen


def pad_input(hidden_states, indices, batch, seqlen):
    import torch

    output = torch.zeros(batch * seqlen, *hidden_states.shape[1:], dtype=hidden_states.dtype,
                         device=hidden_states.device)
    output[indices] = hidden_states
    return output.reshape(batch, seqlen, *hidden_states.shape[1:])


INTERFACE = {name: globals()[name] for name in (
    "flash_attn_func", "flash_attn_qkvpacked_func", "flash_attn_kvpacked_func", "flash_attn_varlen_func",
    "flash_attn_varlen_qkvpacked_func", "flash_attn_varlen_kvpacked_func")}
PADDING = {name: globals()[name] for name in ("index_first_axis", "unpad_input", "pad_input")}
# Which names each stand-in module provides; every other name fails when used.
PROVIDED = {"flash_attn": INTERFACE, "flash_attn.flash_attn_interface": INTERFACE, "flash_attn.bert_padding": PADDING}
