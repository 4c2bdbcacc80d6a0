"""The encoder: layers assembled from the config's selectors, with residuals, norms and checkpointing.

    post-LN (BERT):        x = LN(x + drop(attn(x)));      x = LN(x + drop(ffn(x)))
    pre-LN (crammedBERT):  x = x + drop(attn(LN(x)));      x = x + drop(ffn(LN(x)))

A component that sets `owns_residual = True` (MEGA's gated attention, for one) is called as
`x = component(x, ...)` and applies its own residual and normalisation.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from leanbert.config import LeanBertConfig
from leanbert.modeling.registry import ATTENTION, FFN
from leanbert.modeling.token_layout import TokenLayout


class Residual(nn.Module):
    """Wraps a sub-layer f with dropout, a residual connection and a LayerNorm (pre or post)."""

    def __init__(self, block: nn.Module, config: LeanBertConfig):
        super().__init__()
        self.block = block
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.pre_norm = config.norm_scheme == "pre"

    def forward(self, x: torch.Tensor, *layout: TokenLayout) -> torch.Tensor:
        if self.pre_norm:
            return x + self.dropout(self.block(self.norm(x), *layout))
        return self.norm(x + self.dropout(self.block(x, *layout)))


def _with_residual(block: nn.Module, config: LeanBertConfig) -> nn.Module:
    return block if getattr(block, "owns_residual", False) else Residual(block, config)


class LeanBertLayer(GradientCheckpointingLayer):
    def __init__(self, config: LeanBertConfig):
        super().__init__()
        self.attention = _with_residual(ATTENTION.get(config.attention_type)(config), config)
        self.ffn = _with_residual(FFN.get(config.ffn_type)(config), config)

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        return self.ffn(self.attention(x, layout))  # (B, L, H) or (T, H)


class LeanBertEncoder(nn.Module):
    def __init__(self, config: LeanBertConfig):
        super().__init__()
        self.layers = nn.ModuleList(LeanBertLayer(config) for _ in range(config.num_hidden_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.final_norm else None

    def forward(
        self, x: torch.Tensor, layout: TokenLayout, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """x: (B, L, H). With `layout.unpadded` the layers see (T, H) and padded outputs are zeros."""
        if layout.unpadded:
            x = layout.unpad(x)  # (T, H)
        states = [x] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x, layout)
            if states is not None:
                states.append(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
            if states is not None:
                states[-1] = x
        if layout.unpadded:
            x = layout.pad(x)
            states = [layout.pad(s) for s in states] if states is not None else None
        return x, (tuple(states) if states is not None else None)
