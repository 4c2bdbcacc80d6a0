"""leanbert's `PreTrainedModel` classes: the base encoder and its task models.

All of them are `transformers` models: `save_pretrained`/`from_pretrained` (safetensors), the Auto
classes (registered by `import leanbert`), pipelines, `Trainer` and gradient checkpointing work as
they do for BERT.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import can_return_tuple

from leanbert.checkpoint import check_checkpoint_folder
from leanbert.config import LeanBertConfig
from leanbert.modeling.attention.dam import DifferentiableAttentionMask
from leanbert.modeling.attention.mega import MegaAttention
from leanbert.modeling.derived_weight import clear_derived_weights
from leanbert.modeling.embeddings import SinusoidalPositions
from leanbert.modeling.encoder import LeanBertEncoder, LeanBertLayer
from leanbert.modeling.fast_path import tracing
from leanbert.modeling.heads import MaskedLMHead, Pooler, classifier_dropout, sequence_classification_loss
from leanbert.modeling.norms import ScaleNorm
from leanbert.modeling.registry import EMBEDDINGS
from leanbert.modeling.token_layout import TokenLayout


class LeanBertPreTrainedModel(PreTrainedModel):
    config_class = LeanBertConfig
    config: LeanBertConfig
    base_model_prefix = "leanbert"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["LeanBertLayer"]
    _can_record_outputs = {"hidden_states": LeanBertLayer}
    # our losses are plain means: Trainer must not pass num_items_in_batch or skip its own scaling
    accepts_loss_kwargs = False

    def __init__(self, config: LeanBertConfig, *args, **kwargs):
        # from_pretrained(..., field=value) sets config fields after the config's own check: check again
        config.validate_leanbert()
        super().__init__(config, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """As transformers', but a local folder is checked first so that a missing or corrupt config or
        weights file, or a pickle that is not weights-only, fails with one error naming the file."""
        local = isinstance(pretrained_model_name_or_path, (str, os.PathLike)) and os.path.isdir(pretrained_model_name_or_path)
        if local and not kwargs.get("variant"):  # a variant's file names ("model.fp16.safetensors") are transformers'
            check_checkpoint_folder(os.path.join(pretrained_model_name_or_path, kwargs.get("subfolder") or ""))
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def train(self, mode: bool = True):
        """As nn.Module's, and drops the fast paths' cached weight copies (`derived_weight`), so that
        edits made through `.data` before (as LoRA merges do) are seen by the next forward."""
        clear_derived_weights(self)
        return super().train(mode)

    def auxiliary_loss(self) -> torch.Tensor | float:
        """The terms components add to the training loss (SparseBERT's mask sparsity), for the last forward."""
        return sum((module.loss_term(self.config) for module in self.modules() if hasattr(module, "loss_term")), 0.0)

    def _with_auxiliary_losses(self, loss: torch.Tensor | None) -> torch.Tensor | None:
        """In training, the task loss plus `auxiliary_loss()`; evaluation reports the task loss alone."""
        return loss if loss is None or not self.training else loss + self.auxiliary_loss()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, MaskedLMHead) and module.bias is not None:
            init.zeros_(module.bias)
        elif isinstance(module, SinusoidalPositions):  # the table is a non-persistent buffer: rebuild it
            positions, hidden = module.table.shape
            init.copy_(module.table, SinusoidalPositions.sinusoid_table(positions, hidden))
            init.constant_(module.scale_factor, hidden**-0.5)
        elif isinstance(module, ScaleNorm):
            init.ones_(module.scalar)
        elif isinstance(module, MegaAttention):
            module.reset_parameters(self.config.initializer_range)
        elif isinstance(module, DifferentiableAttentionMask):
            module.reset_parameters()


class LeanBertModel(LeanBertPreTrainedModel):
    """The bare encoder: embeddings -> layers -> (final norm), plus an optional pooler."""

    def __init__(self, config: LeanBertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = EMBEDDINGS.get(config.embedding_type)(config)
        self.encoder = LeanBertEncoder(config)
        self.pooler = Pooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embeddings.word_embeddings = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        unpad: bool = False,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """`unpad=True` runs the layers on real tokens only: faster on padded batches, same outputs at real
        positions, zeros at padded ones (the default keeps BERT's values there, for exact parity)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        if length == 0:
            raise ValueError("the sequences have length 0: every sequence needs at least one token "
                             "(a tokenizer adds [CLS] and [SEP])")
        _refuse_attention_outputs(self.config, kwargs)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        padding_mask = _padding_mask(attention_mask)
        layout = TokenLayout(padding_mask, unpadded=unpad and padding_mask is not None)
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, L, H)
        x, hidden_states = self.encoder(x, layout, output_hidden_states=bool(output_hidden_states))
        pooled = self.pooler(x, padding_mask) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=x, pooler_output=pooled, hidden_states=hidden_states)


def _refuse_attention_outputs(config: LeanBertConfig, kwargs: dict) -> None:
    if kwargs.get("output_attentions") or config.output_attentions:
        raise ValueError("output_attentions is not supported: leanbert's attention runs fused kernels "
                         "that never form the attention probabilities")


def _padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, L) 0/1 -> (B, L) bool, or None when nothing is padded (attention then takes its maskless path).

    While torch.compile, torch.export or torch.jit traces the model the mask is kept as it is: both
    checks read the mask's values, which a graph for every input cannot branch on.
    """
    if attention_mask is None:
        return None
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be (batch, length) with 1 for tokens and 0 for padding, got shape "
                         f"{tuple(attention_mask.shape)}; leanbert takes no 3D/4D masks (attention is bidirectional "
                         "over the real tokens)")
    if tracing():
        return attention_mask.bool()
    if attention_mask.dtype != torch.bool and bool((attention_mask < 0).any()):  # float or integer
        raise ValueError("attention_mask must hold 1 (attend) and 0 (padding); this one has negative values, "
                         "as an additive mask (0 / -10000) would, which would read inverted")
    mask = attention_mask.bool()
    return None if bool(mask.all()) else mask


class LeanBertForMaskedLM(LeanBertPreTrainedModel):
    def __init__(self, config: LeanBertConfig):
        super().__init__(config)
        self.leanbert = LeanBertModel(config, add_pooling_layer=False)
        self.cls = MaskedLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module | None:
        """The untied decoder (None when tied: the embedding decodes, see `MaskedLMHead`)."""
        return self.cls.decoder

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        """transformers' `resize_token_embeddings` puts the resized untied decoder here."""
        self.cls.decoder = new_embeddings

    def resize_token_embeddings(self, *args, **kwargs) -> nn.Module:
        """As transformers', and the MLM head's per-token bias follows (new tokens start at 0)."""
        embeddings = super().resize_token_embeddings(*args, **kwargs)
        bias = self.cls.bias
        vocab = embeddings.weight.shape[0]
        if bias is not None and bias.shape[0] != vocab:
            with torch.no_grad():
                resized = bias.new_zeros(vocab)
                kept = min(vocab, bias.shape[0])
                resized[:kept] = bias[:kept]
            self.cls.bias = nn.Parameter(resized, requires_grad=bias.requires_grad)
        return embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        unpad: bool = False,
        **kwargs,
    ) -> MaskedLMOutput:
        _refuse_attention_outputs(self.config, kwargs)
        out = self.leanbert(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_hidden_states=output_hidden_states, unpad=unpad, return_dict=True,
        )
        hidden = out.last_hidden_state  # (B, L, H)
        loss = None
        if labels is not None and self.config.sparse_prediction:
            selected = labels.view(-1) != -100
            logits = self.cls(hidden.reshape(-1, hidden.shape[-1])[selected], self.leanbert.embeddings)  # (M, V)
            loss = F.cross_entropy(logits, labels.view(-1)[selected]) if logits.shape[0] else logits.sum() * 0.0
        else:
            logits = self.cls(hidden, self.leanbert.embeddings)  # (B, L, V)
            if labels is not None:
                loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
        return MaskedLMOutput(loss=self._with_auxiliary_losses(loss), logits=logits, hidden_states=out.hidden_states)


class LeanBertForSequenceClassification(LeanBertPreTrainedModel):
    """Single-label, multi-label or regression, chosen by `config.problem_type` as in transformers."""

    def __init__(self, config: LeanBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.leanbert = LeanBertModel(config)
        self.dropout = nn.Dropout(classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        unpad: bool = False,
        **kwargs,
    ) -> SequenceClassifierOutput:
        _refuse_attention_outputs(self.config, kwargs)
        out = self.leanbert(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_hidden_states=output_hidden_states, unpad=unpad, return_dict=True,
        )
        logits = self.classifier(self.dropout(out.pooler_output))  # (B, num_labels)
        loss = sequence_classification_loss(self.config, logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=self._with_auxiliary_losses(loss), logits=logits,
                                        hidden_states=out.hidden_states)


class LeanBertForTokenClassification(LeanBertPreTrainedModel):
    def __init__(self, config: LeanBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.leanbert = LeanBertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        unpad: bool = False,
        **kwargs,
    ) -> TokenClassifierOutput:
        _refuse_attention_outputs(self.config, kwargs)
        out = self.leanbert(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
            output_hidden_states=output_hidden_states, unpad=unpad, return_dict=True,
        )
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, L, num_labels)
        loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1)) if labels is not None else None
        return TokenClassifierOutput(loss=self._with_auxiliary_losses(loss), logits=logits,
                                     hidden_states=out.hidden_states)
