"""How a batch's tokens are laid out in the encoder: padded (B, L, H) or unpadded (T, H).

Unpadding drops the padded positions before the layers, so every per-token operation (the
projections, feed-forward, norms) costs T = sum of real lengths instead of B * L tokens. Only the
attention scores need the sequences apart: a component either reads them from `offsets` (sequence b
is rows offsets[b] .. offsets[b + 1] of the (T, C) tensor) or calls `layout.pad(x)` to scatter its
per-token tensors into the (B, L) grid and `layout.unpad(y)` to gather them back. The saving is the
padding fraction of the batch; the scatter/gather costs O(T * C) memory traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass
class TokenLayout:
    """mask: (B, L) bool, True = real token. `unpadded`: hidden states travel as (T, H)."""

    mask: torch.Tensor | None
    unpadded: bool = False

    @cached_property
    def indices(self) -> torch.Tensor:
        """(T,) int64: the real tokens' rows in the flattened (B * L) grid (only the unpadded layout asks)."""
        return self.mask.reshape(-1).nonzero().squeeze(1)

    @cached_property
    def offsets(self) -> torch.Tensor:
        """(B + 1,) int64: sequence b is rows offsets[b] .. offsets[b + 1] of the unpadded (T, C) layout."""
        return torch.cat([self.mask.new_zeros(1, dtype=torch.long), self.mask.sum(1).cumsum(0)])

    @property
    def batch_shape(self) -> tuple[int, int]:
        return tuple(self.mask.shape)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> (T, C)."""
        return x.reshape(-1, x.shape[-1]).index_select(0, self.indices)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(T, C) -> (B, L, C), zeros at padded positions."""
        batch, length = self.batch_shape
        out = x.new_zeros(batch * length, x.shape[-1])
        out.index_copy_(0, self.indices, x)
        return out.view(batch, length, x.shape[-1])

    def to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token tensor in whatever layout the encoder uses -> (B, L, C)."""
        return self.pad(x) if self.unpadded else x

    def from_grid(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> the encoder's layout."""
        return self.unpad(x) if self.unpadded else x
