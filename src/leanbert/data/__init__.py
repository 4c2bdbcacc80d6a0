"""leanbert's data layer: pretraining corpora, MLM batches and GLUE, thin over Hugging Face ``datasets``.

* :mod:`leanbert.data.corpus`: documents -> ``[CLS] ... [SEP]`` blocks that never cross documents.
* :mod:`leanbert.data.mlm_collator`: token- or whole-word masking with BERT's 80/10/10 rule.
* :mod:`leanbert.data.glue`: the GLUE task registry, validated loading (hub, JSON Lines, TSV), tokenization.
* :mod:`leanbert.data.glue_metrics`: GLUE metrics and a ``Trainer`` ``compute_metrics``.
* :mod:`leanbert.data.records`: :class:`DataError` and line-numbered JSON Lines reading.
"""

from leanbert.data.corpus import (
    build_pretraining_dataset,
    load_corpus,
    pack_blocks,
    split_documents,
    tokenize_documents,
)
from leanbert.data.glue import GLUE_TASKS, GlueTask, available_tasks, get_task, load_glue_task, tokenize_glue
from leanbert.data.glue_metrics import compute_glue_metrics, main_score, make_compute_metrics
from leanbert.data.mlm_collator import MLMCollator
from leanbert.data.records import DataError

__all__ = [
    "GLUE_TASKS",
    "DataError",
    "GlueTask",
    "MLMCollator",
    "available_tasks",
    "build_pretraining_dataset",
    "compute_glue_metrics",
    "get_task",
    "load_corpus",
    "load_glue_task",
    "main_score",
    "make_compute_metrics",
    "pack_blocks",
    "split_documents",
    "tokenize_documents",
    "tokenize_glue",
]
