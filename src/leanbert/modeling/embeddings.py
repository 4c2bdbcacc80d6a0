"""Token embeddings: "dense" (BERT) and "hash" (BERT Hash), plus positions, token types and LayerNorm.

    e(t, i, s) = LayerNorm( token(t) + pos(i) + type(s) )

    dense:  token(t) = E[t]            E: V x H          params V*H
    hash:   token(t) = E[t] @ P        E: V x k, P: k x H params V*k + k*H   (BERT Hash, seed 000)

The hash table is a k-float "hash" of each token that a shared projection re-encodes to the hidden
size: for V=30,522, k=5, H=768 that is 156,450 parameters instead of 23.4 M. Cost per token: one
row lookup, plus for "hash" a k x H matrix-vector product (2kH FLOPs). Memory O(L*H).

Positions are "absolute" (a learned table, BERT), "scaled_sinusoidal" (crammedBERT: a fixed
sin/cos table times one learned scalar initialised to H^-1/2) or "none" (MEGA, whose attention has
a relative-position bias; the sequence length is then not bounded here).

Both embeddings also `decode` hidden states back to vocabulary logits with their own (tied) table,
so the MLM head of a hash model costs V*k, not V*H, parameters:

    dense:  logits = h @ E^T           hash:  logits = (h @ P^T) @ E^T
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from leanbert.config import LeanBertConfig
from leanbert.modeling.registry import EMBEDDINGS

POSITION_TYPES = ("absolute", "scaled_sinusoidal", "none")


class SinusoidalPositions(nn.Module):
    """pos(i) = scale * [sin(i w_0), cos(i w_0), sin(i w_1), ...], w_j = 10000^(-2j/H); one learned scalar."""

    def __init__(self, hidden_size: int, max_positions: int):
        super().__init__()
        self.register_buffer("table", self.sinusoid_table(max_positions, hidden_size), persistent=False)
        self.scale_factor = nn.Parameter(torch.tensor([hidden_size**-0.5]))

    @staticmethod
    def sinusoid_table(max_positions: int, hidden_size: int) -> torch.Tensor:
        position = torch.arange(max_positions, dtype=torch.float32)[:, None]  # (P, 1)
        freq = torch.exp(torch.arange(0, hidden_size, 2, dtype=torch.float32) * (-math.log(10000.0) / hidden_size))
        table = torch.zeros(max_positions, hidden_size)  # (P, H)
        table[:, 0::2] = torch.sin(position * freq)
        table[:, 1::2] = torch.cos(position * freq[: hidden_size // 2])  # an odd H has one sine more
        return table

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return self.scale_factor * self.table[position_ids]


class _TokenEmbeddings(nn.Module):
    """Shared part: positions, token types, LayerNorm, dropout. Subclasses define `token` and `decode`."""

    def __init__(self, config: LeanBertConfig):
        super().__init__()
        self.position_type = config.position_embedding_type
        self.max_positions = config.max_position_embeddings
        if self.position_type == "absolute":
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        elif self.position_type == "scaled_sinusoidal":
            self.position_embeddings = SinusoidalPositions(config.hidden_size, config.max_position_embeddings)
        else:
            self.position_embeddings = None
        self.token_type_embeddings = (
            nn.Embedding(config.type_vocab_size, config.hidden_size) if config.type_vocab_size > 0 else None
        )
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.embedding_norm else None
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    @classmethod
    def validate_config(cls, config: LeanBertConfig) -> None:
        if config.position_embedding_type not in POSITION_TYPES:
            raise ValueError(
                f"LeanBertConfig.position_embedding_type={config.position_embedding_type!r}; "
                f"allowed: {list(POSITION_TYPES)}"
            )

    def token(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def from_table_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Token vectors (B, L, H) from rows of `word_embeddings` (what `inputs_embeds` holds, as in
        transformers: `model(inputs_embeds=model.get_input_embeddings()(ids))` equals `model(ids)`)."""
        return rows

    def decode(self, hidden: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.token(input_ids) if inputs_embeds is None else self.from_table_rows(inputs_embeds)  # (B, L, H)
        length = x.shape[1]
        if self.position_embeddings is not None:  # "none": position_ids, if given, have nothing to select
            if position_ids is None:
                if length > self.max_positions:
                    raise ValueError(f"a sequence of {length} tokens is longer than the model's "
                                     f"max_position_embeddings={self.max_positions}; truncate it")
                position_ids = torch.arange(length, device=x.device)
            x = x + self.position_embeddings(position_ids)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:  # all segment 0: one broadcast row, no gather
                x = x + self.token_type_embeddings.weight[0]
            else:
                x = x + self.token_type_embeddings(token_type_ids)
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)


@EMBEDDINGS.register("dense")
class DenseEmbeddings(_TokenEmbeddings):
    """BERT's token table E: V x H."""

    def __init__(self, config: LeanBertConfig):
        super().__init__(config)
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)

    def token(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.word_embeddings(input_ids)

    def decode(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.word_embeddings.weight)  # (..., H) @ (H, V) -> (..., V)


@EMBEDDINGS.register("hash")
class HashEmbeddings(_TokenEmbeddings):
    """BERT Hash: a V x k table, then a k x H projection without bias."""

    own_fields = ("hash_projections",)

    def __init__(self, config: LeanBertConfig):
        super().__init__(config)
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hash_projections, padding_idx=config.pad_token_id)
        self.projection = nn.Linear(config.hash_projections, config.hidden_size, bias=False)

    def token(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.from_table_rows(self.word_embeddings(input_ids))

    def from_table_rows(self, rows: torch.Tensor) -> torch.Tensor:
        return self.projection(rows)  # (B, L, k) -> (B, L, H)

    def decode(self, hidden: torch.Tensor) -> torch.Tensor:
        hashed = hidden @ self.projection.weight  # (..., H) @ (H, k) -> (..., k)
        return F.linear(hashed, self.word_embeddings.weight)  # (..., k) @ (k, V) -> (..., V)
