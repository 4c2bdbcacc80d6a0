"""GLUE metrics from scikit-learn and scipy, and each task's single "main" score.

Per task (the metric names of the HF ``glue`` metric):

* cola: ``matthews_correlation``
* stsb: ``pearson``, ``spearmanr``
* mrpc, qqp: ``accuracy``, ``f1`` (binary, positive class = 1)
* sst2, mnli, qnli, rte, wnli: ``accuracy``

``main_score`` follows the GLUE leaderboard: the mean of a task's metrics
(so stsb = (pearson + spearmanr) / 2, mrpc/qqp = (accuracy + f1) / 2), which for
one-metric tasks is that metric. Correlations of a constant prediction are
undefined; they are reported as 0.0 (as scikit-learn does for Matthews), so a
collapsed model scores as uninformative instead of turning model selection NaN.

Cost: O(N) for accuracy/F1/MCC/Pearson, O(N log N) for Spearman.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from leanbert.data.glue import get_task

MAIN_SCORE_KEY = "main_score"


def _correlation(statistic: Callable, predictions: np.ndarray, labels: np.ndarray) -> float:
    if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        return 0.0
    return float(statistic(predictions, labels)[0])


_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": lambda predictions, labels: float(accuracy_score(labels, predictions)),
    "f1": lambda predictions, labels: float(f1_score(labels, predictions, pos_label=1, zero_division=0.0)),
    "matthews_correlation": lambda predictions, labels: float(matthews_corrcoef(labels, predictions)),
    "pearson": lambda predictions, labels: _correlation(pearsonr, predictions, labels),
    "spearmanr": lambda predictions, labels: _correlation(spearmanr, predictions, labels),
}


def predictions_from_outputs(task: str, outputs: np.ndarray) -> np.ndarray:
    """Turn model outputs into predictions: argmax over logits (N, C), or scores (N,)/(N, 1) for stsb."""
    outputs = np.asarray(outputs)
    if get_task(task).is_regression:
        if outputs.ndim == 2 and outputs.shape[1] == 1:
            outputs = outputs[:, 0]
        if outputs.ndim != 1:
            raise ValueError(f"stsb predictions must have shape (N,) or (N, 1), got {outputs.shape}")
        return outputs.astype(np.float64)
    if outputs.ndim == 2:
        return outputs.argmax(axis=-1)
    if outputs.ndim != 1:
        raise ValueError(f"{task} predictions must be class ids (N,) or logits (N, C), got shape {outputs.shape}")
    return outputs.astype(np.int64)


def main_score(task: str, metrics: dict[str, float]) -> float:
    """The task's single GLUE score: the mean of its metrics."""
    names = get_task(task).metric_names
    return float(sum(metrics[name] for name in names) / len(names))


def compute_glue_metrics(task: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Metrics of a task plus ``main_score``; ``predictions`` may be logits, class ids or stsb scores.

    Outputs that are not all finite (a diverged run's NaN logits) score NaN: argmax would read a row of
    NaNs as class 0 and give a finite, meaningless accuracy, and the GLUE summary leaves NaN seeds out.
    """
    glue_task = get_task(task)
    outputs = np.asarray(predictions)
    if np.issubdtype(outputs.dtype, np.floating) and not np.isfinite(outputs).all():
        return {name: float("nan") for name in (*glue_task.metric_names, MAIN_SCORE_KEY)}
    predictions = predictions_from_outputs(glue_task.name, outputs)
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if predictions.shape != labels.shape:
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels (task {glue_task.name})")
    if len(labels) == 0:
        raise ValueError(f"no examples to score for task {glue_task.name}")
    metrics = {name: _METRICS[name](predictions, labels) for name in glue_task.metric_names}
    metrics[MAIN_SCORE_KEY] = main_score(glue_task.name, metrics)
    return metrics


def make_compute_metrics(task: str) -> Callable[[object], dict[str, float]]:
    """A ``compute_metrics`` for ``transformers.Trainer``: EvalPrediction -> :func:`compute_glue_metrics`.

    Uses the first array when the model returns a tuple of outputs (logits first).
    """
    task = get_task(task).name

    def compute_metrics(eval_prediction) -> dict[str, float]:
        outputs = eval_prediction.predictions
        if isinstance(outputs, (tuple, list)):
            outputs = outputs[0]
        return compute_glue_metrics(task, outputs, eval_prediction.label_ids)

    return compute_metrics
