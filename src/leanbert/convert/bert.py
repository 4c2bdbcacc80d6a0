"""Import a transformers BERT checkpoint (model_type "bert"; also the published Bort) into leanbert.

The mapping is one-to-one except attention: BERT's separate query/key/value projections are
concatenated into leanbert's fused `qkv` (one GEMM instead of three), and the MLM decoder, tied to
the word embeddings in BERT, is the embedding's own `decode` in leanbert. An untied BERT
(`tie_word_embeddings=False`) keeps its own decoder, as leanbert's untied head does.
"""

from __future__ import annotations

import os
import re
import warnings

import torch
from transformers import BertConfig

from leanbert.checkpoint import CheckpointError, load_config
from leanbert.config import LeanBertConfig
from leanbert.convert.converted_folder import write_converted
from leanbert.modeling.model import (
    LeanBertForMaskedLM,
    LeanBertForSequenceClassification,
    LeanBertForTokenClassification,
    LeanBertModel,
)

_TARGETS = {
    "BertModel": LeanBertModel,
    "BertForMaskedLM": LeanBertForMaskedLM,
    "BertForPreTraining": LeanBertForMaskedLM,
    "BertForSequenceClassification": LeanBertForSequenceClassification,
    "BertForTokenClassification": LeanBertForTokenClassification,
}

_RENAMES = [  # (BERT pattern, leanbert replacement), applied in order after the "bert." prefix is handled
    (r"^embeddings\.LayerNorm\.", "embeddings.norm."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"encoder.layers.\1.attention.block.output."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"encoder.layers.\1.attention.norm."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"encoder.layers.\1.ffn.block.intermediate."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"encoder.layers.\1.ffn.block.output."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"encoder.layers.\1.ffn.norm."),
    (r"^cls\.predictions\.transform\.dense\.", "cls.dense."),
    (r"^cls\.predictions\.transform\.LayerNorm\.", "cls.norm."),
    (r"^cls\.predictions\.bias$", "cls.bias"),
]
_DROPPED = ("embeddings.position_ids", "embeddings.token_type_ids", "cls.predictions.decoder.bias", "cls.seq_relationship")


def leanbert_config_from_bert(bert: BertConfig) -> LeanBertConfig:
    if getattr(bert, "position_embedding_type", "absolute") not in (None, "absolute"):
        raise CheckpointError(f"BERT position_embedding_type={bert.position_embedding_type!r} is not supported")
    return LeanBertConfig(
        vocab_size=bert.vocab_size, hidden_size=bert.hidden_size, num_hidden_layers=bert.num_hidden_layers,
        num_attention_heads=bert.num_attention_heads, intermediate_size=bert.intermediate_size,
        hidden_act=bert.hidden_act, hidden_dropout_prob=bert.hidden_dropout_prob,
        attention_probs_dropout_prob=bert.attention_probs_dropout_prob,
        max_position_embeddings=bert.max_position_embeddings, type_vocab_size=bert.type_vocab_size,
        initializer_range=bert.initializer_range, layer_norm_eps=bert.layer_norm_eps,
        pad_token_id=bert.pad_token_id, classifier_dropout=bert.classifier_dropout,
        num_labels=bert.num_labels, id2label=bert.id2label, label2id=bert.label2id, problem_type=bert.problem_type,
        tie_word_embeddings=bert.tie_word_embeddings,
    )


def bert_state_dict_to_leanbert(state: dict[str, torch.Tensor], num_layers: int, task_model: bool,
                                tied: bool = True) -> dict:
    """Rename BERT keys to leanbert keys and fuse q/k/v. `task_model` adds the `leanbert.` prefix;
    `tied` (BERT's `tie_word_embeddings`) drops the decoder, which must equal the word embeddings."""
    out: dict[str, torch.Tensor] = {}
    decoder = state.get("cls.predictions.decoder.weight")
    word = state.get("bert.embeddings.word_embeddings.weight", state.get("embeddings.word_embeddings.weight"))
    if tied and decoder is not None and word is not None and not torch.equal(decoder, word):
        raise CheckpointError("the BERT MLM decoder differs from the word embeddings, but its config says "
                              "tie_word_embeddings=True")
    if not tied and decoder is not None:
        out["cls.decoder.weight"] = decoder
    # BERT's forward adds the decoder's own bias; `cls.predictions.bias` is that tensor only when tied
    if "cls.predictions.decoder.bias" in state:
        out["cls.bias"] = state["cls.predictions.decoder.bias"]
    base = "leanbert." if task_model else ""
    for key, tensor in state.items():
        if key.endswith(_DROPPED) or key.startswith(_DROPPED) or key == "cls.predictions.decoder.weight":
            continue
        if re.search(r"attention\.self\.(query|key|value)\.", key):
            continue  # fused below
        inner = key[len("bert."):] if key.startswith("bert.") else key
        is_base = key.startswith("bert.") or not key.startswith(("cls.", "classifier."))
        for pattern, replacement in _RENAMES:
            inner = re.sub(pattern, replacement, inner)
        out.setdefault((base if is_base else "") + inner, tensor)  # cls.bias may hold the decoder's already
    prefix = "bert." if any(k.startswith("bert.") for k in state) else ""
    for layer in range(num_layers):
        for kind in ("weight", "bias"):
            parts = [state[f"{prefix}encoder.layer.{layer}.attention.self.{name}.{kind}"]
                     for name in ("query", "key", "value")]
            out[f"{base}encoder.layers.{layer}.attention.block.qkv.{kind}"] = torch.cat(parts, dim=0)
    return out


def convert_bert(src: str | os.PathLike, out: str | os.PathLike):
    """Convert BERT checkpoint `src` (hub name or folder) into a leanbert checkpoint folder `out`.

    Returns the converted leanbert model. The tokenizer files, if present, are copied along.
    """
    import transformers

    bert_config = load_config(src)
    if bert_config.model_type != "bert":
        raise CheckpointError(f"{src}: model_type is {bert_config.model_type!r}, expected 'bert'")
    for field in ("is_decoder", "add_cross_attention"):
        if getattr(bert_config, field, False):
            raise CheckpointError(f"{src}: {field}=True is not supported (leanbert encoders attend both ways)")
    architecture = (bert_config.architectures or ["BertModel"])[0]
    if architecture not in _TARGETS:
        raise CheckpointError(f"{src}: architecture {architecture!r} not supported; allowed: {sorted(_TARGETS)}")
    bert_model, loading = getattr(transformers, architecture).from_pretrained(src, output_loading_info=True)
    # transformers fills weights the file lacks with random ones; only a missing pooler is tolerated
    # (fine-tuning trains it anew), with a warning
    absent = [key for key in loading["missing_keys"] if "pooler" not in key]
    if absent:
        raise CheckpointError(f"{src}: the checkpoint lacks weights the {architecture} config needs: {sorted(absent)}")
    if loading["missing_keys"]:
        warnings.warn(f"{src}: no pooler weights in the checkpoint; the pooler starts untrained", stacklevel=2)
    target_class = _TARGETS[architecture]
    model = target_class(leanbert_config_from_bert(bert_config))
    state = bert_state_dict_to_leanbert(
        bert_model.state_dict(), bert_config.num_hidden_layers, task_model=target_class is not LeanBertModel,
        tied=bert_config.tie_word_embeddings,
    )
    if model.base_model.pooler is None:  # BertForPreTraining's pooler serves its NSP head, which is dropped
        state = {k: v for k, v in state.items() if ".pooler." not in f".{k}"}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith("pooler.dense.weight") and "pooler" not in k]:
        raise CheckpointError(f"{src}: weights do not map onto leanbert (missing {missing}, unexpected {unexpected})")
    write_converted(model, src, out)
    return model
