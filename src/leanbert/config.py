"""LeanBertConfig: BERT's fields, the component selectors, and their parameters — validated.

The config is the single source of truth for a leanbert model. The encoder reads three string
selectors and looks each one up in a registry (`leanbert.modeling.registry`):

    embedding_type  "dense" | "hash" | ...   token embeddings (positions, token types, LayerNorm as BERT)
    attention_type  "full" | "mega" | "sparse"   the token-mixing sub-layer
    ffn_type        "dense" | ...            the feed-forward sub-layer

so any embedding can be combined with any attention and any feed-forward. Every error names the
field, the value given and what is allowed.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig
from transformers.activations import ACT2FN


class LeanBertConfig(PreTrainedConfig):
    """Configuration of a leanbert encoder.

    BERT fields (same meaning and defaults as `transformers.BertConfig`):
        vocab_size (int, 30522): rows of the token table.
        hidden_size (int, 768): width of the residual stream.
        num_hidden_layers (int, 12): encoder layers.
        num_attention_heads (int, 12): heads per attention sub-layer; must divide hidden_size.
        intermediate_size (int, 3072): width of the dense feed-forward.
        hidden_act (str, "gelu"): activation of the feed-forward and of the MLM head transform.
        hidden_dropout_prob (float, 0.1), attention_probs_dropout_prob (float, 0.1): dropout rates.
        max_position_embeddings (int, 512): longest sequence with learned positions.
        type_vocab_size (int, 2): token types (segments); 0 disables the table.
        initializer_range (float, 0.02): std of the normal init.
        layer_norm_eps (float, 1e-12): LayerNorm epsilon.
        pad_token_id (int, 0), classifier_dropout (float | None): as in BERT.

    Component selectors and their parameters:
        embedding_type (str, "dense"): "dense" (vocab x hidden table) or "hash" (vocab x k table, then a
            k x hidden projection without bias; BERT Hash).
        hash_projections (int | None): k, the width of the hash table; required for "hash".
        attention_type (str, "full"): token mixer; "full" is scaled-dot-product attention over all tokens;
            "mega" is MEGA's moving-average gated attention (single head, EMA then gated softmax attention
            inside chunks; it owns its residual and norm), with:
        mega_ema_size (int, 16): N, the dimensions of the damped EMA per channel.
        mega_shared_size (int, 128): Z, the width of the shared query/key representation.
        mega_value_size (int | None, None): the width of the values and of the attention gate; None = 2 H.
        mega_chunk_size (int, -1): attention runs inside chunks of this many tokens (-1: over the whole
            sequence, which must then be at most max_position_embeddings long). The EMA always spans the
            whole sequence.
        mega_bidirectional (bool, True): the EMA runs both ways (an encoder); False = causal.
            "sparse" is full attention restricted by a sparsity pattern (SparseBERT), with:
        sparse_pattern (str, "dam"): "dam" = the structured Differentiable Attention Mask (each head learns
            which distances |i - j| to keep); or a fixed pattern: "window", "longformer", "bigbird",
            "strided", "fixed", "logsparse", "star" (see `modeling/attention/sparse_patterns.py`).
        sparse_penalty (float, 1e-4): lambda of the training loss's lambda * sum(mask) sparsity term (DAM).
        sparse_block_size (int, 64): s, the window half-width, stride and block of the fixed patterns.
        sparse_global_tokens (int, 1): tokens (from the first, [CLS]) that see and are seen by all
            ("longformer", "bigbird").
        sparse_random_blocks (int, 3): random key blocks per query block ("bigbird").
        sparse_summary_tokens (int, 8): c, the last tokens of each block that every query sees ("fixed").
        sparse_seed (int, 0): seed of BigBird's random blocks (the same for every layer and head).
        ffn_type (str, "dense"): feed-forward; "dense" is Linear -> act -> Linear; "fff" is UltraFastBERT's
            fast feed-forward: `fff_trees` parallel trees of depth `fff_depth`, each token visiting depth+1
            GELU neurons per tree (2^(depth+1) - 1 neurons per tree in all).
        fff_depth (int, 11), fff_trees (int, 1): the FFF shape ("1x11" = 1 tree of depth 11).

    Backbone options (BERT's values are the defaults; crammedBERT / UltraFastBERT use the others):
        position_embedding_type (str, "absolute"): "absolute" (learned table), "scaled_sinusoidal"
            (fixed sin/cos table times a learned scalar) or "none" (no absolute positions: MEGA, whose
            attention carries a relative-position bias instead).
        embedding_norm (bool, True): LayerNorm on the embedding sum.
        norm_scheme (str, "post"): "post" = LayerNorm(x + f(x)) as BERT; "pre" = x + f(LayerNorm(x)).
        norm_type (str, "layernorm"): the sub-layers' and the final norm: "layernorm" or "scalenorm"
            (g x / sqrt(mean(x^2) + eps), one scalar g; MEGA). The embedding norm stays a LayerNorm.
        final_norm (bool, False): a norm after the last layer (pre-LN models need it).
        use_bias (bool, True): biases on the encoder's dense layers.
        pooler_type (str, "cls"): sequence-classification pooling: "cls" (BERT pooler: tanh(W h_cls)) or
            "avg" (mean over valid tokens, then tanh(W .)).
        tie_word_embeddings (bool, True): the MLM head decodes with the embedding's own table (for a hash
            embedding: the factorised V x k table, so logits have rank k); False gives the head its own
            V x H decoder (an MLM-only part: base-model counts and fine-tuned models do not include it).
        mlm_head_transform (bool, True): the Dense -> act -> LayerNorm transform before the vocabulary
            projection (BERT); False goes straight to the tied decoder.
        mlm_head_act (str | None, None): the transform's activation; None = hidden_act (MEGA uses "tanh").
        mlm_head_norm (bool, True): the transform's LayerNorm (MEGA has none).
        mlm_decoder_bias (bool, True): a per-token bias on the MLM logits.
        sparse_prediction (bool, True): when labels are given, project only the masked positions to the
            vocabulary (the projection dominates a tiny model's cost). Logits then have shape (n_masked, V).
    """

    model_type = "leanbert"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    classifier_dropout: float | None = None
    tie_word_embeddings: bool = True

    embedding_type: str = "dense"
    hash_projections: int | None = None
    attention_type: str = "full"
    ffn_type: str = "dense"
    fff_depth: int = 11
    fff_trees: int = 1
    mega_ema_size: int = 16
    mega_shared_size: int = 128
    mega_value_size: int | None = None
    mega_chunk_size: int = -1
    mega_bidirectional: bool = True
    sparse_pattern: str = "dam"
    sparse_penalty: float = 1e-4
    sparse_block_size: int = 64
    sparse_global_tokens: int = 1
    sparse_random_blocks: int = 3
    sparse_summary_tokens: int = 8
    sparse_seed: int = 0

    position_embedding_type: str = "absolute"
    embedding_norm: bool = True
    norm_scheme: str = "post"
    norm_type: str = "layernorm"
    final_norm: bool = False
    use_bias: bool = True
    pooler_type: str = "cls"
    mlm_head_transform: bool = True
    mlm_head_act: str | None = None
    mlm_head_norm: bool = True
    mlm_decoder_bias: bool = True
    sparse_prediction: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        self.validate_leanbert()

    def validate_leanbert(self) -> None:
        """Raise ValueError naming the field, the value and what is allowed."""
        from leanbert.modeling.registry import REGISTRIES  # components register on import

        for field, registry in REGISTRIES.items():
            value = getattr(self, field)
            if not isinstance(value, str) or value not in registry:
                raise ValueError(
                    f"LeanBertConfig.{field}={value!r} is not a known component; allowed: {registry.names()}"
                )
        for field in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                      "intermediate_size", "max_position_embeddings"):
            _require(self, field, _is_int(getattr(self, field)) and getattr(self, field) > 0, "a positive int")
        _require(self, "type_vocab_size", _is_int(self.type_vocab_size) and self.type_vocab_size >= 0, "an int >= 0")
        for field in _BOOL_FIELDS:
            _require(self, field, isinstance(getattr(self, field), bool), "True or False")
        _require(self, "hidden_act", isinstance(self.hidden_act, str) and self.hidden_act in ACT2FN,
                 f"a transformers activation such as {sorted(ACT2FN)[:6]}")
        _require(self, "pad_token_id", self.pad_token_id is None
                 or (_is_int(self.pad_token_id) and 0 <= self.pad_token_id < self.vocab_size),
                 f"None or an int in [0, vocab_size={self.vocab_size})")
        _require(self, "layer_norm_eps", _is_number(self.layer_norm_eps) and self.layer_norm_eps > 0, "a positive number")
        _require(self, "initializer_range", _is_number(self.initializer_range) and self.initializer_range >= 0,
                 "a non-negative number")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"LeanBertConfig.hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}; allowed: a multiple of the head count"
            )
        if self.embedding_type == "hash":
            if self.hash_projections is None:
                raise ValueError(
                    "LeanBertConfig.hash_projections=None: embedding_type='hash' needs hash_projections, "
                    "a positive int (the width k of the vocab x k table)"
                )
            _require(self, "hash_projections", _is_int(self.hash_projections) and self.hash_projections > 0,
                     "a positive int")
        for field in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            _require(self, field, _is_probability(getattr(self, field)), "a number p with 0 <= p < 1")
        _require(self, "classifier_dropout", self.classifier_dropout is None or _is_probability(self.classifier_dropout),
                 "a number p with 0 <= p < 1 (or None)")
        _require(self, "mlm_head_act", self.mlm_head_act is None
                 or (isinstance(self.mlm_head_act, str) and self.mlm_head_act in ACT2FN),
                 f"None (= hidden_act) or a transformers activation such as {sorted(ACT2FN)[:6]}")
        _require(self, "norm_scheme", self.norm_scheme in ("post", "pre"), str(["post", "pre"]))
        _require(self, "norm_type", self.norm_type in ("layernorm", "scalenorm"), str(["layernorm", "scalenorm"]))
        _require(self, "pooler_type", self.pooler_type in ("cls", "avg"), str(["cls", "avg"]))
        # each registered component may check its own parameters
        for field, registry in REGISTRIES.items():
            check = getattr(registry.get(getattr(self, field)), "validate_config", None)
            if check is not None:
                check(self)


_BOOL_FIELDS = ("tie_word_embeddings", "embedding_norm", "final_norm", "use_bias", "mlm_head_transform",
                "mlm_head_norm", "mlm_decoder_bias", "sparse_prediction")


def _require(config: LeanBertConfig, field: str, holds: bool, allowed: str) -> None:
    if not holds:
        raise ValueError(f"LeanBertConfig.{field}={getattr(config, field)!r}; allowed: {allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_probability(value: Any) -> bool:
    return _is_number(value) and 0.0 <= value < 1.0

