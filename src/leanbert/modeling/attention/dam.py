"""SparseBERT's structured Differentiable Attention Mask, DAM_s (seed 004; Shi et al. 2021).

Each head learns, for every distance d = |i - j| between a query and a key, two logits (keep, drop):

    m[h, d] = one_hot(argmax(a[h, d] + g))[keep]          g = -log(E + 1e-5), E ~ Exp(1) (Gumbel noise)
    M[h, i, j] = m[h, |i - j|]                             (a symmetric Toeplitz mask per head)
    scores[h, i, j] += (1 - M[h, i, j]) * -10000

Training draws g at every forward and passes gradients to a straight through the softmax
(m = hard - soft.detach() + soft); a penalty lambda * sum(M) over the full (heads, P, P) mask, P =
max_position_embeddings, pushes it sparse. Evaluation takes the noise-free argmax, so that the same
model scores the same; the reference draws noise in eval too, which `sample` reproduces when given
its draw E. Cost: O(heads L^2) to expand the mask, added to the dense scores: this pattern is learnt
per distance and has no block structure to skip.
"""

from __future__ import annotations

import torch
from torch import nn

MASK_VALUE = -10000.0  # the reference's additive mask: a dropped key's weight underflows to 0


class DifferentiableAttentionMask(nn.Module):
    """logits (heads, P, 2): per head and distance, (keep, drop). Call -> additive mask (heads, L, L)."""

    no_weight_decay = True  # as the reference's `alphas` (`train/decay_exemptions.py`)

    def __init__(self, num_heads: int, max_positions: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_heads, max_positions, 2))
        self._noise: torch.Tensor | None = None  # the Exp(1) draw of the last call: the penalty charges its mask

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.logits, std=1e-3)  # the reference's init: near 0, so the noise decides at first

    def keep(self, exponential_sample: torch.Tensor | None = None) -> torch.Tensor:
        """(heads, P) keep flags m: the straight-through Gumbel argmax given an Exp(1) draw (heads, P, 2),
        else the noise-free argmax."""
        if exponential_sample is None:
            return (self.logits[..., 0] >= self.logits[..., 1]).to(self.logits.dtype)
        soft = torch.softmax(self.logits - torch.log(exponential_sample + 1e-5), dim=-1)  # (heads, P, 2)
        hard = nn.functional.one_hot(soft.argmax(dim=-1), 2).to(soft.dtype)
        return (hard - soft.detach() + soft)[..., 0]

    def forward(self, length: int, exponential_sample: torch.Tensor | None = None) -> torch.Tensor:
        """(heads, L, L): 0 where a key is kept, -10000 where it is dropped (differentiable in training,
        which draws the noise unless `exponential_sample` is given)."""
        if length > self.logits.shape[1]:
            raise ValueError(f"the attention mask learns distances up to max_position_embeddings="
                             f"{self.logits.shape[1]}, got a sequence of {length} tokens")
        if exponential_sample is None and self.training:
            exponential_sample = torch.empty_like(self.logits).exponential_()
        self._noise = exponential_sample
        keep = self.keep(exponential_sample)[:, :length]  # (heads, L)
        position = torch.arange(length, device=keep.device)
        distance = (position.unsqueeze(0) - position.unsqueeze(1)).abs()  # (L, L)
        return (1.0 - keep[:, distance]) * MASK_VALUE

    def penalty(self) -> torch.Tensor:
        """sum(M) over the full (heads, P, P) mask the last call applied (its noise; under gradient
        checkpointing the recomputed call draws the same): distance 0 occurs P times, d 2 (P - d) times."""
        positions = self.logits.shape[1]
        count = 2.0 * (positions - torch.arange(positions, device=self.logits.device, dtype=self.logits.dtype))
        count[0] = positions
        return (self.keep(self._noise if self.training else None) * count).sum()
