"""The encoder: layers assembled from the config's selectors, with residuals, norms and checkpointing.

    post-LN (BERT):        x = LN(x + drop(attn(x)));      x = LN(x + drop(ffn(x)))
    pre-LN (crammedBERT):  x = x + drop(attn(LN(x)));      x = x + drop(ffn(LN(x)))

A component that sets `owns_residual = True` (MEGA's gated attention, for one) is called as
`x = component(x, ...)` and applies its own residual and normalisation.

Two loops run these equations. `Residual.forward`, layer by layer, is the plain path (training,
hidden-state outputs, any dtype). For eager CPU float32 inference the encoder walks the sub-layers
itself and ends each with one fused pass, `add_norm` (h = x + u and LN(h) together, written over
buffers it owns): in pre-LN, LN is the next sub-layer's norm (or the final norm), so
n = LN_next(x + u) feeds it while x + u stays the residual stream. Tests compare the two loops.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from leanbert.config import LeanBertConfig
from leanbert.modeling import add_norm
from leanbert.modeling.norms import make_norm
from leanbert.modeling.registry import ATTENTION, FFN
from leanbert.modeling.token_layout import TokenLayout


class Residual(nn.Module):
    """Wraps a sub-layer f with dropout, a residual connection and a norm (pre or post; `config.norm_type`)."""

    def __init__(self, block: nn.Module, config: LeanBertConfig):
        super().__init__()
        self.block = block
        self.norm = make_norm(config)
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
        self.final_norm = make_norm(config) if config.final_norm else None
        self.use_fused_norms = True  # set False to force the plain loop (Residual.forward)

    def forward(
        self, x: torch.Tensor, layout: TokenLayout, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """x: (B, L, H). With `layout.unpadded` the layers see (T, H) and padded outputs are zeros."""
        if layout.unpadded:
            x = layout.unpad(x)  # (T, H)
        subs = self._sub_layers()
        if self.use_fused_norms and not output_hidden_states and self._fused_norms_apply(x, subs):
            x = self._forward_fused_norms(x, layout, subs)
            return (layout.pad(x) if layout.unpadded else x), None
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

    def _sub_layers(self) -> list[tuple[Residual, bool]]:
        """Every residual sub-layer in order, and whether its block takes the token layout."""
        return [pair for layer in self.layers for pair in ((layer.attention, True), (layer.ffn, False))]

    def _fused_norms_apply(self, x: torch.Tensor, sub_layers: list[tuple[Residual, bool]]) -> bool:
        subs = [sub for sub, _ in sub_layers]
        norms = [sub.norm for sub in subs if isinstance(sub, Residual)] + ([self.final_norm] if self.final_norm else [])
        # the fused loop calls neither the layers, the Residual wrappers nor their norms, and writes over the
        # blocks' outputs: with a hook anywhere in the encoder (one that keeps an output, say) the plain loop serves
        hooked = any(module._forward_hooks or module._forward_pre_hooks for module in self.modules())
        return (not self.training and not hooked and len(subs) > 0 and all(isinstance(sub, Residual) for sub in subs)
                and add_norm.fast_path_applies(x, norms))

    def _forward_fused_norms(
        self, x: torch.Tensor, layout: TokenLayout, subs: list[tuple[Residual, bool]]
    ) -> torch.Tensor:
        """The layers' equations with each residual add and the norm after it in one pass (inference).

        x is never written (the caller's); every other buffer written is a sub-layer's fresh output.
        """
        if not subs[0][0].pre_norm:  # x = LN(x + f(x)): the norm's output over f's
            for sub, takes_layout in subs:
                update = sub.block(x, *((layout,) if takes_layout else ())).contiguous()
                add_norm.add_norm_(x, update, sub.norm, norm_out=update)
                x = update
            return self.final_norm(x) if self.final_norm is not None else x
        normed = subs[0][0].norm(x)
        owned = False  # whether x is a buffer of ours (a sub-layer's output), so that x + u may go over it
        for i, (sub, takes_layout) in enumerate(subs):
            update = sub.block(normed, *((layout,) if takes_layout else ())).contiguous()
            following = subs[i + 1][0].norm if i + 1 < len(subs) else self.final_norm
            if following is None:  # the last sub-layer, and no final norm
                return x + update
            if owned:  # x + u over x, LN_next(x + u) over u
                add_norm.add_norm_(x, update, following, norm_out=update, sum_out=x)
                normed = update
            else:  # x + u over u, LN_next(x + u) in a new buffer
                normed = torch.empty_like(update)
                add_norm.add_norm_(x, update, following, norm_out=normed, sum_out=update)
                x, owned = update, True
        return normed  # the final norm's output
