"""leanbert: compact, fast BERT-style encoders, native to Hugging Face transformers.

`import leanbert` registers model_type "leanbert" with the transformers Auto classes.
"""

from leanbert.config import LeanBertConfig
from leanbert.modeling.model import (
    LeanBertForMaskedLM,
    LeanBertForSequenceClassification,
    LeanBertForTokenClassification,
    LeanBertModel,
    LeanBertPreTrainedModel,
)
from leanbert.auto_registration import register_auto_classes

register_auto_classes()

__version__ = "0.1.0"
__all__ = [
    "LeanBertConfig",
    "LeanBertModel",
    "LeanBertPreTrainedModel",
    "LeanBertForMaskedLM",
    "LeanBertForSequenceClassification",
    "LeanBertForTokenClassification",
]
