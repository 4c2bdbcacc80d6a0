"""MEGA's moving-average gated attention ("mega"; seed 003, arXiv 2209.10655): an EMA, then a single
gated softmax attention inside chunks. It replaces the whole attention sub-layer, residual and norm
included (`owns_residual`):

    xn = Norm(x)                                         (pre-norm; post-norm normalises `out` instead)
    v  = act(xn W_v + b_v)                               (B, L, I)
    m  = act(EMA(xn) + omega xn)                         (B, L, H)   damped EMA, `ema.py`
    r, z | g, hx = split(m W_m + b_m)                    H, Z + I, H
    r = sigmoid(r);   z, g = act(z | g)                  reset gate; shared representation; attention gate
    q = z * gamma_0 + beta_0,   k = z * gamma_1 + beta_1                     (B, L, Z)
    A = softmax(q k^T / sqrt(Z) + B_rel) v               inside chunks of c tokens, padded keys dropped
    h = act(hx + (A * g) W_h + b_h)
    out = x + r * (h - x)

The relative-position bias is MEGA's "simple" one, B_rel[i, j] = w[c - 1 + j - i], with c the chunk
size (or max_position_embeddings without chunking) and w of 2 max_position_embeddings - 1 entries.
Chunking makes attention cost O(L c Z + L c I) FLOPs and O(L c) memory instead of O(L^2): MEGA's
route to 16k-token inputs, while the EMA still carries information across the whole sequence.
Sequences longer than one chunk are padded to a whole number of chunks (padded keys are dropped);
one no longer than a chunk is one chunk. A chunk whose keys are all padding attends to all of them,
as the reference does, so that no NaN reaches the padded positions.

Cost per token: projections 2 H (I + 2H + Z + I) + 2 I H FLOPs; the EMA O(H log L) by FFT.
Two paths compute the chunked attention: `attend_reference`, explicit scores and softmax (the plain
path), and SDPA with the bias and mask as one additive float mask (`attend_sdpa`). Tests compare them,
and the whole layer against transformers 4.39's `MegaModel` (fixtures `mega_chunked`, `mega_unchunked`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers.activations import ACT2FN

from leanbert.config import LeanBertConfig
from leanbert.modeling.attention.ema import DampedEMA
from leanbert.modeling.norms import make_norm
from leanbert.modeling.packed_linear import FUSED_ACTIVATIONS, PackedLinear
from leanbert.modeling.registry import ATTENTION
from leanbert.modeling.token_layout import TokenLayout


@ATTENTION.register("mega")
class MegaAttention(nn.Module):
    owns_residual = True
    own_fields = ("mega_ema_size", "mega_shared_size", "mega_value_size", "mega_chunk_size", "mega_bidirectional")

    def __init__(self, config: LeanBertConfig):
        super().__init__()
        hidden = config.hidden_size
        self.shared_size = config.mega_shared_size
        self.value_size = config.mega_value_size or 2 * hidden
        self.chunk_size = config.mega_chunk_size
        self.max_positions = config.max_position_embeddings
        self.pre_norm = config.norm_scheme == "pre"
        self.norm = make_norm(config)
        self.act = ACT2FN[config.hidden_act]
        fused = config.hidden_act if config.hidden_act in FUSED_ACTIVATIONS else None
        self.value = PackedLinear(hidden, self.value_size, activation=fused)  # act(xn W_v + b_v)
        self.value_act = nn.Identity() if fused else self.act
        self.ema = DampedEMA(hidden, config.mega_ema_size, config.mega_bidirectional, self.act)
        self.gates = PackedLinear(hidden, 2 * hidden + self.shared_size + self.value_size)
        self.output = PackedLinear(self.value_size, hidden)
        self.qk_weight = nn.Parameter(torch.zeros(2, self.shared_size))  # gamma_0 (queries), gamma_1 (keys)
        self.qk_bias = nn.Parameter(torch.zeros(2, self.shared_size))
        self.relative_bias = nn.Parameter(torch.zeros(2 * config.max_position_embeddings - 1))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.attention_dropout = config.attention_probs_dropout_prob
        self.use_sdpa = True  # set False to force the reference attention path

    @classmethod
    def validate_config(cls, config: LeanBertConfig) -> None:
        for field in ("mega_ema_size", "mega_shared_size"):
            value = getattr(config, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"LeanBertConfig.{field}={value!r}; allowed: a positive int")
        value = config.mega_value_size
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ValueError(f"LeanBertConfig.mega_value_size={value!r}; allowed: None (= 2 hidden_size) or a positive int")
        chunk = config.mega_chunk_size
        if not isinstance(chunk, int) or isinstance(chunk, bool) or not (chunk == -1 or 0 < chunk <= config.max_position_embeddings):
            raise ValueError(f"LeanBertConfig.mega_chunk_size={chunk!r}; allowed: -1 (no chunking) or an int in "
                             f"[1, max_position_embeddings={config.max_position_embeddings}]")
        if not isinstance(config.mega_bidirectional, bool):
            raise ValueError(f"LeanBertConfig.mega_bidirectional={config.mega_bidirectional!r}; allowed: True or False")

    @torch.no_grad()
    def reset_parameters(self, std: float) -> None:
        """MEGA's initialisation of its own parameters (the Linear layers follow the model's)."""
        nn.init.normal_(self.qk_weight, std=std)
        nn.init.zeros_(self.qk_bias)
        nn.init.normal_(self.relative_bias, std=std)
        self.ema.reset_parameters()

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """x: (B, L, H), or (T, H) when `layout.unpadded`; returns the same layout."""
        grid = layout.to_grid(x)  # (B, L, H): the EMA and the chunks run along each sequence
        return layout.from_grid(self.forward_grid(grid, layout.mask))

    def forward_grid(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, L, H), mask (B, L) bool (True = real token) or None -> (B, L, H)."""
        hidden = x.shape[-1]
        xn = self.norm(x) if self.pre_norm else x
        value = self.value_act(self.value(xn))  # (B, L, I)
        mixed = self.dropout(self.ema(xn, mask))  # (B, L, H)
        reset, shared_gate, candidate = self.gates(mixed).split(
            [hidden, self.shared_size + self.value_size, hidden], dim=-1)
        reset = torch.sigmoid(reset)  # (B, L, H)
        shared, gate = self.act(shared_gate).split([self.shared_size, self.value_size], dim=-1)
        query = shared * self.qk_weight[0] + self.qk_bias[0]  # (B, L, Z)
        key = shared * self.qk_weight[1] + self.qk_bias[1]
        attend = attend_sdpa if self.use_sdpa else attend_reference
        context = attend(query, key, value, mask, self._bias, self._chunk(x.shape[1]),
                         self.attention_dropout if self.training else 0.0)  # (B, L, I)
        h = self.act(candidate + self.output(self.dropout(context * gate)))  # (B, L, H)
        out = torch.addcmul(x, reset, self.dropout(h) - x)  # x + r (h - x)
        return out if self.pre_norm else self.norm(out)

    def _chunk(self, length: int) -> int:
        if self.chunk_size > 0:
            return min(self.chunk_size, length)
        if length > self.max_positions:
            raise ValueError(f"MEGA attention without chunking takes at most max_position_embeddings="
                             f"{self.max_positions} tokens, got {length}; set mega_chunk_size or truncate")
        return length

    def _bias(self, chunk: int) -> torch.Tensor:
        """(c, c): B_rel[i, j] = w[span - 1 + j - i], span = the chunk size, or max_position_embeddings."""
        span = self.chunk_size if self.chunk_size > 0 else self.max_positions
        position = torch.arange(chunk, device=self.relative_bias.device)
        return self.relative_bias[span - 1 + position.unsqueeze(0) - position.unsqueeze(1)]


def _chunks(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, chunk: int):
    """Pads L to a multiple of c and splits it: (B, L, .) -> (B, n, c, .); keep (B, n, 1, c) bool or None."""
    batch, length, _ = query.shape
    extra = -length % chunk
    if extra:
        query, key, value = (F.pad(t, (0, 0, 0, extra)) for t in (query, key, value))
        if mask is None:
            mask = torch.ones(batch, length, dtype=torch.bool, device=query.device)
        mask = F.pad(mask, (0, extra), value=False)
    n = (length + extra) // chunk
    query, key, value = (t.reshape(batch, n, chunk, t.shape[-1]) for t in (query, key, value))
    keep = None
    if mask is not None:
        keep = mask.reshape(batch, n, 1, chunk)
        keep = keep | ~keep.any(dim=-1, keepdim=True)  # an all-padding chunk attends to all its keys
    return query, key, value, keep


def attend_reference(query, key, value, mask, bias, chunk: int, dropout: float) -> torch.Tensor:
    """The plain path: softmax(q k^T / sqrt(Z) + B_rel, padded keys dropped) v per chunk -> (B, L, I)."""
    length = query.shape[1]
    q, k, v, keep = _chunks(query, key, value, mask, chunk)  # (B, n, c, Z), (B, n, c, Z), (B, n, c, I)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2) + bias(chunk)  # (B, n, c, c)
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    probs = F.dropout(torch.softmax(scores, dim=-1), p=dropout)
    return (probs @ v).flatten(1, 2)[:, :length]  # (B, L, I)


def attend_sdpa(query, key, value, mask, bias, chunk: int, dropout: float) -> torch.Tensor:
    """The same through SDPA, with the bias and the key mask as one additive mask."""
    length = query.shape[1]
    q, k, v, keep = _chunks(query, key, value, mask, chunk)
    additive = bias(chunk).to(q.dtype)  # (c, c)
    if keep is not None:
        additive = additive.masked_fill(~keep, float("-inf"))  # (B, n, c, c)
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=additive, dropout_p=dropout)
    return context.flatten(1, 2)[:, :length]  # (B, L, I)
