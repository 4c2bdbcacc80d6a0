"""Tests for leanbert.data.glue_metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from transformers import EvalPrediction

from leanbert.data.glue import GLUE_TASKS
from leanbert.data.glue_metrics import compute_glue_metrics, main_score, make_compute_metrics
from leanbert.data.records import DataError


def test_accuracy_from_logits():
    logits = np.array([[2.0, -1.0], [0.1, 0.3], [1.0, 0.0], [-3.0, 3.0]])  # argmax: 0, 1, 0, 1
    metrics = compute_glue_metrics("sst2", logits, np.array([0, 1, 1, 1]))
    assert metrics == {"accuracy": 0.75, "main_score": 0.75}


def test_mrpc_accuracy_f1_and_main_score():
    predictions = np.array([1, 1, 0, 0, 1, 0])
    labels = np.array([1, 0, 0, 1, 1, 0])
    # tp=2, fp=1, fn=1 -> precision 2/3, recall 2/3, F1 2/3; accuracy 4/6.
    metrics = compute_glue_metrics("mrpc", predictions, labels)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["f1"] == pytest.approx(2 / 3)
    assert metrics["main_score"] == pytest.approx((4 / 6 + 2 / 3) / 2)


def test_cola_matthews_correlation_by_hand():
    predictions = np.array([1, 1, 1, 0, 0, 1, 0, 1])
    labels = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    tp, tn, fp, fn = 3, 2, 2, 1
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    metrics = compute_glue_metrics("cola", predictions, labels)
    assert metrics["matthews_correlation"] == pytest.approx(expected)
    assert metrics["main_score"] == pytest.approx(expected)


def test_stsb_correlations_from_column_predictions():
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 5, size=200)
    predictions = (labels + rng.normal(0, 1, size=200))[:, None]  # (N, 1), as a regression head emits
    metrics = compute_glue_metrics("stsb", predictions, labels)
    assert metrics["pearson"] == pytest.approx(np.corrcoef(predictions[:, 0], labels)[0, 1])
    ranks = lambda values: np.argsort(np.argsort(values))  # noqa: E731 - no ties in continuous data
    assert metrics["spearmanr"] == pytest.approx(np.corrcoef(ranks(predictions[:, 0]), ranks(labels))[0, 1])
    assert metrics["main_score"] == pytest.approx((metrics["pearson"] + metrics["spearmanr"]) / 2)
    assert 0.5 < metrics["pearson"] < 1.0


def test_constant_predictions_score_zero_not_nan():
    assert compute_glue_metrics("stsb", np.full(5, 2.5), np.arange(5.0))["pearson"] == 0.0
    assert compute_glue_metrics("cola", np.ones(4, dtype=int), np.array([0, 1, 0, 1]))["matthews_correlation"] == 0.0


def test_every_task_has_a_main_score():
    for name, task in GLUE_TASKS.items():
        metrics = {metric: 0.5 for metric in task.metric_names}
        assert main_score(name, metrics) == 0.5


def test_mismatched_lengths_and_bad_shapes_raise():
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        compute_glue_metrics("sst2", np.array([0, 1, 1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="stsb predictions must have shape"):
        compute_glue_metrics("stsb", np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(DataError, match="unknown GLUE task"):
        compute_glue_metrics("glue", np.array([0]), np.array([0]))


def test_trainer_compute_metrics_accepts_eval_prediction_and_tuples():
    compute_metrics = make_compute_metrics("qnli")
    logits = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    labels = np.array([0, 1, 1])
    assert compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))["accuracy"] == pytest.approx(2 / 3)
    hidden = np.zeros((3, 4, 8))
    with_extra_outputs = EvalPrediction(predictions=(logits, hidden), label_ids=labels)
    assert compute_metrics(with_extra_outputs)["main_score"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("task, outputs", [("sst2", np.full((5, 2), np.nan)), ("mrpc", np.array([[0.1, 2.0]] * 4 + [[np.nan, 1.0]])),
                                           ("stsb", np.array([1.0, np.inf, 2.0, 3.0, 0.5]))])
def test_outputs_of_a_diverged_run_score_nan(task, outputs):
    """argmax over NaN logits is class 0: a diverged classifier would get a finite accuracy and enter the medians."""
    metrics = compute_glue_metrics(task, outputs, np.array([0, 1, 1, 0, 1]))
    assert all(np.isnan(value) for value in metrics.values()) and "main_score" in metrics
