"""Task heads on top of the encoder: pooling, masked-LM, and the classification losses.

    pooler "cls":  p = tanh(W h_[CLS] + b)                         (BERT; [CLS] is the first real token)
    pooler "avg":  p = tanh(W mean_{valid i} h_i + b)              (crammedBERT's average-pool head)
    MLM:           logits = decode(LN(act(W h + b))) + bias         decode = the embedding's tied table,
                                                                 or D (V x H) when untied; the transform
                                                                 (and its LN) optional, act = mlm_head_act

Tied (`tie_word_embeddings`, the default), the MLM decode is the embedding's own `decode`, so a hash
model's head costs V + H^2 parameters, never a V x H matrix; but its logits then have rank k (16 for
bert-hash-nano). Untied, the head owns a V x H decoder D, as BERT's would be without tying.
With `sparse_prediction`, only masked positions are decoded: the vocabulary projection costs
2 H V FLOPs per decoded token, which dominates a tiny model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers.activations import ACT2FN

from leanbert.config import LeanBertConfig


class Pooler(nn.Module):
    def __init__(self, config: LeanBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.average = config.pooler_type == "avg"

    def forward(self, hidden: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        if not self.average and padding_mask is None:
            pooled = hidden[:, 0]  # (B, H)
        elif not self.average:  # the first real token, [CLS], also under left padding
            first = padding_mask.to(torch.int8).argmax(dim=1)  # (B,)
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), first]
        elif padding_mask is None:
            pooled = hidden.mean(dim=1)
        else:
            weights = padding_mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
        return torch.tanh(self.dense(pooled))


class MaskedLMHead(nn.Module):
    """Transform (optional), then the tied decode (or an own V x H decoder), then a per-token bias (optional)."""

    def __init__(self, config: LeanBertConfig):
        super().__init__()
        if config.mlm_head_transform:
            self.dense = nn.Linear(config.hidden_size, config.hidden_size)
            self.act = ACT2FN[config.mlm_head_act or config.hidden_act]
            self.norm = (nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.mlm_head_norm
                         else nn.Identity())
        else:
            self.dense = None
        self.decoder = None if config.tie_word_embeddings else nn.Linear(config.hidden_size, config.vocab_size,
                                                                            bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size)) if config.mlm_decoder_bias else None

    def forward(self, hidden: torch.Tensor, embeddings: nn.Module) -> torch.Tensor:
        if self.dense is not None:
            hidden = self.norm(self.act(self.dense(hidden)))
        logits = embeddings.decode(hidden) if self.decoder is None else self.decoder(hidden)  # (..., V)
        return logits if self.bias is None else logits + self.bias


def classifier_dropout(config: LeanBertConfig) -> float:
    """Dropout before a classifier: `classifier_dropout`, else the hidden dropout (as in BERT)."""
    return config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob


def sequence_classification_loss(
    config: LeanBertConfig, logits: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Regression (MSE), single-label (cross-entropy) or multi-label (BCE), chosen as transformers does."""
    num_labels = config.num_labels
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype)) if num_labels == 1 \
            else F.mse_loss(logits, labels.to(logits.dtype))
    if config.problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
