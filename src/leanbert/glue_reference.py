"""Published GLUE dev-set scores from the seed documents, to print next to our own runs.

Scores are fractions (0.8131, not 81.31), keyed like leanbert's results: ``{task: {metric: value}}``,
with mnli's two dev sets as ``accuracy_matched`` / ``accuracy_mismatched``.

* BERT Hash (seed 000, ``shared/seeds/000_*.txt``): bert-tiny and bert-hash-femto/pico/nano, fine-tuned
  with transformers' ``run_glue.py`` (seq 128, batch 32, lr 1e-4, 4 epochs); MNLI m/mm, MRPC f1/acc, SST-2 acc.
* UltraFastBERT-1x11-long (seed 001): median of 5 trials under "GLUE-sane" on the dev sets. The
  card gives one number per task without naming the metric (MNLI "m-mm" is a single 81.3), so those
  values are stored under ``reported``, not matched to a specific metric.

* A majority-class row (always the most frequent dev label), computed from the GLUE dev files:
  SST-2 444/872 positive, MRPC 279/408 equivalent (f1 = 2*279 / (2*279 + 129)). It is the floor a
  fine-tuned model must clear; note that the published bert-hash-femto MRPC row equals it exactly.

No cost: constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field

REPORTED = "reported"  # the card's one number for a task, metric unnamed


@dataclass(frozen=True)
class PublishedGlueRow:
    """One model's published GLUE dev scores and how they were obtained."""

    model: str
    parameters: str  # as published, e.g. "0.969M"
    protocol: str  # "run_glue" or "glue_sane", as in leanbert.train.glue_protocols
    source: str
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    average: float | None = None


_BERT_HASH_SOURCE = "seed 000 (BERT Hash Nano model card), run_glue.py: seq 128, batch 32, lr 1e-4, 4 epochs"


def _bert_hash_row(model: str, parameters: str, mnli: tuple[float, float], mrpc: tuple[float, float],
                   sst2: float) -> PublishedGlueRow:
    return PublishedGlueRow(
        model=model, parameters=parameters, protocol="run_glue", source=_BERT_HASH_SOURCE,
        scores={
            "mnli": {"accuracy_matched": mnli[0], "accuracy_mismatched": mnli[1]},
            "mrpc": {"f1": mrpc[0], "accuracy": mrpc[1]},
            "sst2": {"accuracy": sst2},
        },
    )


BERT_HASH_ROWS: tuple[PublishedGlueRow, ...] = (
    _bert_hash_row("bert-tiny (baseline)", "4.4M", (0.7114, 0.7161), (0.8318, 0.7353), 0.8222),
    _bert_hash_row("bert-hash-femto", "0.243M", (0.5697, 0.5750), (0.8122, 0.6838), 0.7821),
    _bert_hash_row("bert-hash-pico", "0.448M", (0.6228, 0.6363), (0.8205, 0.7083), 0.7878),
    _bert_hash_row("bert-hash-nano", "0.969M", (0.6565, 0.6670), (0.8172, 0.7083), 0.8131),
)

ULTRAFASTBERT_ROW = PublishedGlueRow(
    model="UltraFastBERT-1x11-long",
    parameters="crammedBERT 16x768, FFF 1x11",
    protocol="glue_sane",
    source="seed 001 (UltraFastBERT-1x11-long model card): GLUE-sane, median over 5 trials, dev sets",
    scores={task: {REPORTED: value} for task, value in {
        "mnli": 0.813, "qqp": 0.876, "qnli": 0.897, "sst2": 0.899,
        "stsb": 0.864, "mrpc": 0.875, "rte": 0.607,
    }.items()},
    average=0.830,
)

MAJORITY_CLASS_ROW = PublishedGlueRow(
    model="majority class (floor)",
    parameters="0",
    protocol="none",
    source="always the most frequent dev label: SST-2 444/872 positive, MRPC 279/408 equivalent",
    scores={"mrpc": {"f1": 2 * 279 / (2 * 279 + 129), "accuracy": 279 / 408}, "sst2": {"accuracy": 444 / 872}},
)

PUBLISHED_ROWS: tuple[PublishedGlueRow, ...] = (*BERT_HASH_ROWS, ULTRAFASTBERT_ROW)
