"""The "fff" feed-forward selector: UltraFastBERT's exact fast feed-forward (`fff.py`) in the encoder.

`fff_trees` trees of depth `fff_depth`, width = hidden_size. Per token it costs 4 K (D+1) H FLOPs
against the dense feed-forward's 4 H I: for 1x11 at H=768 that is 12 of 4,095 neurons. The input
projection keeps its bias even in bias-free (crammedBERT) backbones, as the original does.
"""

from __future__ import annotations

from leanbert.config import LeanBertConfig
from leanbert.modeling.ffn.fff import FastFeedForward
from leanbert.modeling.registry import FFN


@FFN.register("fff")
class FFFFeedForward(FastFeedForward):
    owns_residual = False
    own_fields = ("fff_depth", "fff_trees")

    def __init__(self, config: LeanBertConfig):
        super().__init__(config.hidden_size, config.fff_depth, config.fff_trees, bias=True)

    @classmethod
    def validate_config(cls, config: LeanBertConfig) -> None:
        depth, trees = config.fff_depth, config.fff_trees
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= 20:
            raise ValueError(f"LeanBertConfig.fff_depth={depth!r}; allowed: an int from 0 to 20")
        if isinstance(trees, bool) or not isinstance(trees, int) or trees < 1:
            raise ValueError(f"LeanBertConfig.fff_trees={trees!r}; allowed: a positive int")
