"""Import a SparseBERT checkpoint (han-shi/SparseBERT's `modeling.BertModel`, NVIDIA BERT layout) with its
structured Differentiable Attention Mask.

The source folder holds the reference's `config.json` (a plain BERT config, no model_type) and
`pytorch_model.bin` or `model.safetensors` with BERT's keys, where the fused bias+GELU and bias+tanh
layers are named `dense_act`, plus `init_alphas` (heads, positions, 2): the DAM logits, one table the
reference shares between all layers. leanbert gives every layer a copy (`attention_type="sparse"`,
`sparse_pattern="dam"`), so that fine-tuning may let the layers' masks part.
"""

from __future__ import annotations

import os
import re

import torch
from transformers import BertConfig

from leanbert.checkpoint import CheckpointError, load_folder_weights, local_checkpoint_folder, read_config
from leanbert.convert.bert import bert_state_dict_to_leanbert, leanbert_config_from_bert
from leanbert.convert.converted_folder import load_converted_state, write_converted
from leanbert.modeling.model import LeanBertModel

_ALPHAS = "init_alphas"


def load_sparsebert(src: str | os.PathLike) -> LeanBertModel:
    folder = local_checkpoint_folder(src)
    source = str(folder / "config.json")
    raw = read_config(folder)
    try:
        config = leanbert_config_from_bert(BertConfig(**raw))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: not a BERT config ({err})") from None
    config.attention_type, config.sparse_pattern = "sparse", "dam"
    config.validate_leanbert()
    state = load_folder_weights(folder)
    if any(key.startswith(("bert.", "cls.")) for key in state):
        raise CheckpointError(f"{folder}: a pre-training checkpoint (bert./cls. keys); only the BertModel layout "
                              "is supported")
    alphas = state.pop(_ALPHAS, None)
    expected = (config.num_attention_heads, config.max_position_embeddings, 2)
    if alphas is None or tuple(alphas.shape) != expected:
        found = "none" if alphas is None else tuple(alphas.shape)
        raise CheckpointError(f"{folder}: needs the DAM logits {_ALPHAS} of shape {expected}, found {found}")
    state = {re.sub(r"\.dense_act\.", ".dense.", key): tensor for key, tensor in state.items()}
    try:
        renamed = bert_state_dict_to_leanbert(state, config.num_hidden_layers, task_model=False)
    except KeyError as err:
        raise CheckpointError(f"{folder}: no weight {err.args[0]!r}") from None
    for layer in range(config.num_hidden_layers):
        renamed[f"encoder.layers.{layer}.attention.block.dam.logits"] = alphas.clone()
    return load_converted_state(LeanBertModel(config), renamed, folder)


def convert_sparsebert(src: str | os.PathLike, out: str | os.PathLike) -> LeanBertModel:
    model = load_sparsebert(src)
    write_converted(model, local_checkpoint_folder(src), out)
    return model


def exponential_sample_to_all_layers(model: LeanBertModel, sample: torch.Tensor | None) -> None:
    """Every layer's DAM uses this Exp(1) draw (heads, positions, 2), as the reference's one shared draw;
    None returns them to drawing their own (training) or to the noise-free mask (evaluation)."""
    for layer in model.encoder.layers:
        layer.attention.block.exponential_sample = sample
