"""Import an UltraFastBERT / crammedBERT-FFF checkpoint (pbelcak/UltraFastBERT, `training/cramming`).

The source is a folder (or hub name) with the reference's own `config.json` (everything under
"arch", model_type "crammedBERT") and `pytorch_model.bin` or `model.safetensors` in the
reference's key layout. crammedBERT's choices map onto generic leanbert options: pre-LN blocks,
no biases on dense layers, scaled-sinusoidal positions, a normalised embedding, a final norm, a
tied decoder without bias and no head transform, and FFF feed-forwards (`intermed_size` trees of
depth `intermed_depth`). The one real rewrite is attention: the reference's fused qkv rows are
ordered (head, q|k|v, head_dim); leanbert's are (q|k|v, head, head_dim).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from leanbert.checkpoint import CheckpointError, load_folder_weights, local_checkpoint_folder
from leanbert.config import LeanBertConfig
from leanbert.convert.converted_folder import load_converted_state, renamed_key, write_converted
from leanbert.modeling.model import LeanBertForMaskedLM

_RENAMES = [
    (r"^encoder\.embedding\.word_embedding\.", "leanbert.embeddings.word_embeddings."),
    (r"^encoder\.embedding\.pos_embedding\.scale_factor$", "leanbert.embeddings.position_embeddings.scale_factor"),
    (r"^encoder\.embedding\.norm\.", "leanbert.embeddings.norm."),
    (r"^encoder\.layers\.(\d+)\.norm1\.", r"leanbert.encoder.layers.\1.attention.norm."),
    (r"^encoder\.layers\.(\d+)\.norm2\.", r"leanbert.encoder.layers.\1.ffn.norm."),
    (r"^encoder\.layers\.(\d+)\.attn\.dense\.", r"leanbert.encoder.layers.\1.attention.block.output."),
    (r"^encoder\.layers\.(\d+)\.ffn\.", r"leanbert.encoder.layers.\1.ffn.block."),
    (r"^encoder\.final_norm\.", "leanbert.encoder.final_norm."),
]
_QKV = re.compile(r"^encoder\.layers\.(\d+)\.attn\.self_attention\.query_key_value\.weight$")
_SKIPPED = re.compile(r"(norm_factor|pos_embedding\.pe|^decoder\.weight)$")


# arch fields whose value leanbert's crammedBERT options need. An absent field is taken to hold
# that value, except those in _DEFAULTS, where the reference's own default differs.
_EXPECTED = {
    "norm_scheme": "pre", "intermed_type": "fff", "tie_weights": True, "decoder_bias": False, "use_bias": False,
    "final_norm": True, "skip_head_transform": True, "norm": "LayerNorm", "nonlin": "GELU", "ffn_layer_frequency": 1,
    "embedding.pos_embedding": "scaled-sinusoidal", "attention.type": "self-attention",
    "attention.sequence_op": "torch-softmax", "attention.skip_output_projection": False,
    "attention.qkv_bias": False, "attention.rotary_embedding": False, "attention.causal_attention": False,
}
_DEFAULTS = {"intermed_type": "ff", "embedding.pos_embedding": None}


def _field(arch: dict, name: str, default=KeyError):
    """arch's field by dotted name ("attention.type"); a missing required one is a CheckpointError."""
    value = arch
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            if default is KeyError:
                raise CheckpointError(f"crammedBERT config has no arch.{name}")
            return default
        value = value[part]
    return value


def leanbert_config_from_crammed(arch: dict) -> LeanBertConfig:
    """Map the reference's `arch` config; every choice leanbert cannot express is refused by name."""
    for name, needed in _EXPECTED.items():
        value = _field(arch, name, _DEFAULTS.get(name, needed))
        if value != needed:
            raise CheckpointError(f"crammedBERT arch.{name}={value!r} is not supported (expected {needed!r})")
    hidden = _field(arch, "hidden_size")
    if _field(arch, "embedding.embedding_dim", hidden) != hidden:
        raise CheckpointError("crammedBERT arch.embedding.embedding_dim must equal hidden_size")
    embedding, attention = _field(arch, "embedding"), _field(arch, "attention")
    head = arch.get("classification_head") or {}
    return LeanBertConfig(
        vocab_size=_field(arch, "embedding.vocab_size"), hidden_size=hidden,
        num_hidden_layers=_field(arch, "num_transformer_layers"),
        num_attention_heads=_field(arch, "attention.num_attention_heads"),
        intermediate_size=4 * hidden, hidden_act="gelu",
        hidden_dropout_prob=arch.get("hidden_dropout_prob", 0.1),
        attention_probs_dropout_prob=attention.get("dropout_prob", 0.1),
        max_position_embeddings=_field(arch, "embedding.max_seq_length"), type_vocab_size=0,
        layer_norm_eps=arch.get("norm_eps", 1e-12), pad_token_id=embedding.get("pad_token_id", 0),
        initializer_range=(arch.get("init") or {}).get("std", 0.02),
        ffn_type="fff", fff_depth=_field(arch, "intermed_depth"), fff_trees=_field(arch, "intermed_size"),
        norm_scheme="pre", final_norm=True, use_bias=False, position_embedding_type="scaled_sinusoidal",
        embedding_norm=bool(embedding.get("normalization", True)), pooler_type=head.get("pooler", "avg"),
        mlm_head_transform=False, mlm_decoder_bias=False,
        classifier_dropout=head.get("classifier_dropout"),
    )


def crammed_state_dict_to_leanbert(state: dict[str, torch.Tensor], num_heads: int) -> dict[str, torch.Tensor]:
    out = {}
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}  # torch.compile'd checkpoints
    decoder, word = state.get("decoder.weight"), state.get("encoder.embedding.word_embedding.weight")
    if decoder is not None and word is not None and not torch.equal(decoder, word):
        raise CheckpointError("crammedBERT decoder.weight is not tied to the word embedding")
    if word is None and decoder is not None:  # tied, saved once under the decoder's name (safetensors' save_model)
        state["encoder.embedding.word_embedding.weight"] = decoder
    for key, tensor in state.items():
        if _SKIPPED.search(key):
            continue
        match = _QKV.match(key)
        if match:
            three_hidden, hidden = tensor.shape
            head_dim = hidden // num_heads
            fused = tensor.view(num_heads, 3, head_dim, hidden).transpose(0, 1).reshape(three_hidden, hidden)
            out[f"leanbert.encoder.layers.{match.group(1)}.attention.block.qkv.weight"] = fused
            continue
        out[renamed_key(key, _RENAMES, "crammedBERT")] = tensor
    return out


def _read_arch(src: Path) -> dict:
    path = src / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: no config.json in UltraFastBERT checkpoint folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if "arch" not in config:
        raise CheckpointError(f"{path}: no 'arch' section; not a crammedBERT config")
    return config["arch"]


def load_ultrafastbert(src: str | os.PathLike) -> LeanBertForMaskedLM:
    folder = local_checkpoint_folder(src)
    config = leanbert_config_from_crammed(_read_arch(folder))
    state = crammed_state_dict_to_leanbert(load_folder_weights(folder), config.num_attention_heads)
    return load_converted_state(LeanBertForMaskedLM(config), state, folder)


def convert_ultrafastbert(src: str | os.PathLike, out: str | os.PathLike) -> LeanBertForMaskedLM:
    model = load_ultrafastbert(src)
    write_converted(model, local_checkpoint_folder(src), out)
    return model
