"""Import a MEGA encoder checkpoint in transformers' layout (`MegaForMaskedLM` / `MegaModel`, transformers
<= 4.39; MEGA was removed from later releases): `config.json` with model_type "mega", and
`model.safetensors` or `pytorch_model.bin`.

MEGA's choices map onto generic leanbert options: word embeddings only (no absolute positions, no
embedding norm; token types when the checkpoint has them), `attention_type="mega"` (EMA + gated chunked attention with the "simple" relative
bias, which owns its residual and norm), MEGA's normalised feed-forward as a dense feed-forward with the same norm (pre-norm, or post-norm as in
the published 16k encoders: `normalize_before_*`), no final norm, and an MLM head of Dense -> tanh ->
tied decoder (or the decoder alone without `add_lm_hidden_dense_layer`).
Every choice leanbert cannot express is refused by name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from leanbert.checkpoint import CheckpointError, load_folder_weights, local_checkpoint_folder, read_config
from leanbert.config import LeanBertConfig
from leanbert.convert.converted_folder import load_converted_state, renamed_key, write_converted
from leanbert.modeling.model import LeanBertForMaskedLM

# config fields whose value leanbert's MEGA needs; an absent field holds MegaConfig's default
_EXPECTED = {
    "relative_positional_bias": ("simple", "rotary"), "attention_activation": ("softmax", "softmax"),
    "norm_affine": (True, True), "use_normalized_ffn": (True, True), "truncation": (None, None),
    "is_decoder": (False, False), "add_cross_attention": (False, False),
}
_NORMS = {"scalenorm": "scalenorm", "layernorm": "layernorm"}

_LAYER = r"^layers\.(\d+)\."
_RENAMES = [
    (r"^embedding_layer\.word_embeddings\.", "leanbert.embeddings.word_embeddings."),
    (r"^embedding_layer\.token_type_embeddings\.", "leanbert.embeddings.token_type_embeddings."),
    (_LAYER + r"mega_layer\.norm\.norm\.", r"leanbert.encoder.layers.\1.attention.norm."),
    (_LAYER + r"mega_layer\.v_proj\.", r"leanbert.encoder.layers.\1.attention.value."),
    (_LAYER + r"mega_layer\.mx_proj\.", r"leanbert.encoder.layers.\1.attention.gates."),
    (_LAYER + r"mega_layer\.h_proj\.", r"leanbert.encoder.layers.\1.attention.output."),
    (_LAYER + r"mega_layer\.(qk_weight|qk_bias)$", r"leanbert.encoder.layers.\1.attention.\2"),
    (_LAYER + r"mega_layer\.rel_pos_bias\.rel_pos_bias$", r"leanbert.encoder.layers.\1.attention.relative_bias"),
    (_LAYER + r"mega_layer\.ema_gate\.damping_factor$", r"leanbert.encoder.layers.\1.attention.ema.damping"),
    (_LAYER + r"mega_layer\.ema_gate\.decay_factor$", r"leanbert.encoder.layers.\1.attention.ema.decay"),
    (_LAYER + r"mega_layer\.ema_gate\.ema_expansion_matrix$", r"leanbert.encoder.layers.\1.attention.ema.expansion"),
    (_LAYER + r"mega_layer\.ema_gate\.kernel_projection_matrix$",
     r"leanbert.encoder.layers.\1.attention.ema.projection"),
    (_LAYER + r"mega_layer\.ema_gate\.residual_weight$", r"leanbert.encoder.layers.\1.attention.ema.residual_weight"),
    (_LAYER + r"nffn\.norm\.norm\.", r"leanbert.encoder.layers.\1.ffn.norm."),
    (_LAYER + r"nffn\.fc1\.", r"leanbert.encoder.layers.\1.ffn.block.intermediate."),
    (_LAYER + r"nffn\.fc2\.", r"leanbert.encoder.layers.\1.ffn.block.output."),
]
_HEAD = {"dense.weight": "cls.dense.weight", "dense.bias": "cls.dense.bias", "mlm_head.bias": "cls.bias"}
_SKIPPED = re.compile(r"^(pooler\.|embedding_layer\.token_type_ids$)")  # MegaModel's pooler; a buffer


def leanbert_config_from_mega(config: dict, source: str = "config.json") -> LeanBertConfig:
    """Map transformers' MegaConfig fields; `source` names the file in errors."""
    if config.get("model_type") != "mega":
        raise CheckpointError(f"{source}: model_type={config.get('model_type')!r}, expected 'mega'")
    for name, (needed, default) in _EXPECTED.items():
        if config.get(name, default) != needed:
            raise CheckpointError(f"{source}: MEGA {name}={config.get(name, default)!r} is not supported "
                                  f"(expected {needed!r})")
    before_mega, before_ffn = config.get("normalize_before_mega", True), config.get("normalize_before_ffn", True)
    if before_mega != before_ffn:
        raise CheckpointError(f"{source}: MEGA normalize_before_mega={before_mega!r} with normalize_before_ffn="
                              f"{before_ffn!r} is not supported (leanbert norms both sub-layers alike)")
    norm = config.get("normalization_type", "scalenorm")
    if norm not in _NORMS:
        raise CheckpointError(f"{source}: MEGA normalization_type={norm!r} is not supported; allowed: {sorted(_NORMS)}")
    chunk = config.get("chunk_size", -1)
    if not config.get("use_chunking", False) and chunk >= 0:
        # 4.39's relative bias spans chunk_size whenever it is >= 0, chunking or not; leanbert's spans
        # the chunk only when it chunks
        raise CheckpointError(f"{source}: MEGA chunk_size={chunk} with use_chunking=False is not supported "
                              "(expected chunk_size -1 without chunking)")
    try:
        hidden = config["hidden_size"]
        chunk = chunk if config.get("use_chunking", False) else -1
        return LeanBertConfig(
            vocab_size=config["vocab_size"], hidden_size=hidden, num_hidden_layers=config["num_hidden_layers"],
            num_attention_heads=1, intermediate_size=config.get("nffn_hidden_size", 256),
            hidden_act=config.get("activation", "silu"),
            hidden_dropout_prob=config.get("hidden_dropout_prob", 0.1),
            attention_probs_dropout_prob=config.get("attention_probs_dropout_prob", 0.1),
            max_position_embeddings=config.get("max_positions", 2048),
            type_vocab_size=config.get("type_vocab_size", 2) if config.get("add_token_type_embeddings", False) else 0,
            initializer_range=config.get("initializer_range", 0.02), layer_norm_eps=1e-5,
            pad_token_id=config.get("pad_token_id", 1),
            attention_type="mega", mega_ema_size=config.get("ema_projection_size", 16),
            mega_shared_size=config.get("shared_representation_size", 64),
            mega_value_size=config.get("intermediate_size", 256), mega_chunk_size=chunk,
            mega_bidirectional=config.get("bidirectional", True),
            position_embedding_type="none", embedding_norm=False, norm_scheme="pre" if before_mega else "post",
            norm_type=_NORMS[norm],
            final_norm=False, use_bias=True,
            mlm_head_transform=config.get("add_lm_hidden_dense_layer", True), mlm_head_act="tanh",
            mlm_head_norm=False, mlm_decoder_bias=True,
        )
    except KeyError as err:
        raise CheckpointError(f"{source}: MEGA config has no field {err.args[0]!r}") from None
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from None


def mega_state_dict_to_leanbert(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """(leanbert state dict, tied): EMA tensors lose their trailing size-1 axis; an untied MLM decoder is kept."""
    out = {}
    word, decoder = state.get("mega.embedding_layer.word_embeddings.weight"), state.get("mlm_head.weight")
    tied = decoder is None or (word is not None and torch.equal(decoder, word))
    for key, tensor in state.items():
        if key in _HEAD:
            out[_HEAD[key]] = tensor
            continue
        if key == "mlm_head.weight":
            if not tied:
                out["cls.decoder.weight"] = tensor
            continue
        inner = key.removeprefix("mega.")
        if _SKIPPED.search(inner):
            continue
        renamed = renamed_key(inner, _RENAMES, "MEGA", original=key)
        out[renamed] = tensor.squeeze(-1) if renamed.endswith(("ema.damping", "ema.decay", "ema.expansion")) else tensor
    return out, tied


def load_mega(src: str | os.PathLike) -> LeanBertForMaskedLM:
    folder = local_checkpoint_folder(src)
    config = leanbert_config_from_mega(read_config(folder), str(Path(folder) / "config.json"))
    state, tied = mega_state_dict_to_leanbert(load_folder_weights(folder))
    config.tie_word_embeddings = tied
    # a MegaModel checkpoint has no MLM head: the encoder converts, the head starts untrained
    return load_converted_state(LeanBertForMaskedLM(config), state, folder, optional_prefix="cls.")


def convert_mega(src: str | os.PathLike, out: str | os.PathLike) -> LeanBertForMaskedLM:
    model = load_mega(src)
    write_converted(model, local_checkpoint_folder(src), out)
    return model
