"""Registers leanbert with the transformers Auto classes, so `AutoModel*.from_pretrained` and pipelines work."""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from leanbert.config import LeanBertConfig
from leanbert.modeling.model import (
    LeanBertForMaskedLM,
    LeanBertForSequenceClassification,
    LeanBertForTokenClassification,
    LeanBertModel,
)

_AUTO_MODELS = (
    (AutoModel, LeanBertModel),
    (AutoModelForMaskedLM, LeanBertForMaskedLM),
    (AutoModelForSequenceClassification, LeanBertForSequenceClassification),
    (AutoModelForTokenClassification, LeanBertForTokenClassification),
)


def register_auto_classes() -> None:
    AutoConfig.register(LeanBertConfig.model_type, LeanBertConfig, exist_ok=True)
    for auto_class, model_class in _AUTO_MODELS:
        auto_class.register(LeanBertConfig, model_class, exist_ok=True)
