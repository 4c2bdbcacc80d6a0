"""GLUE fine-tuning protocols: one named hyperparameter set each, shared by every task.

Two protocols, so a leanbert number can be put next to a published one measured the same way:

* ``run_glue`` -- the BERT Hash seed's (000) setting, Hugging Face ``run_glue.py`` with
  ``--max_seq_length 128 --per_device_train_batch_size 32 --learning_rate 1e-4 --num_train_epochs 4``
  and that script's defaults for the rest (no warm-up, no weight decay, linear decay, one seed).
* ``glue_sane`` -- UltraFastBERT's (001, from crammedBERT) "GLUE-sane" rules: at most 5 epochs,
  one hyperparameter set for every task, and the median over several seeds. The rules fix the
  procedure, not the numbers; the set below is ours:

  - learning rate 1e-4: leanbert's models are compact (bert-hash femto..nano, bert-tiny), and the
    seed fine-tuned exactly these sizes at 1e-4. Base-size encoders usually want 2e-5..5e-5
    (``--lr`` overrides it for every task at once, which keeps the run GLUE-sane);
  - batch 32, 5 epochs (the cap), sequences of at most 128 tokens;
  - linear decay after a 10 % warm-up, weight decay 0.01 (AdamW): the usual BERT fine-tuning
    recipe, and the warm-up keeps the randomly initialised classifier from wrecking the encoder
    in the first steps at this learning rate;
  - 5 seeds, median reported (as the model card reports).

Both protocols batch by length (``group_by_length``) and pad each batch only to its own longest row:
it changes which rows share a batch, not the hyperparameters, and cuts CPU time by several times
on GLUE's mostly short sentences. Cost of a protocol run: ``epochs x train rows`` forward+backward
passes per seed, plus one forward pass over each validation split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class FinetuneSettings:
    """Hyperparameters of one fine-tuning run (the same for every task of a protocol).

    Args:
        protocol: the protocol these settings come from.
        max_seq_length: tokens per example after truncation (pairs are truncated together).
        batch_size: training examples per optimizer step.
        eval_batch_size: examples per evaluation forward pass (no gradients, so larger).
        learning_rate: peak AdamW learning rate.
        epochs: passes over the training split.
        warmup_ratio: fraction of the training steps spent warming the learning rate up from 0.
        weight_decay: AdamW decoupled weight decay.
        lr_scheduler: a ``transformers`` scheduler name, e.g. "linear".
        seeds: how many seeds a ``leanbert glue`` run trains per task (median reported).
        group_by_length: batch rows of similar length together (less padding).
        max_train_samples: keep only the first N training rows (None: all), as run_glue.py does.
        max_eval_samples: keep only the first N rows of each validation split (None: all).
    """

    protocol: str
    max_seq_length: int = 128
    batch_size: int = 32
    eval_batch_size: int = 128
    learning_rate: float = 1e-4
    epochs: float = 4.0
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"
    seeds: int = 1
    group_by_length: bool = True
    max_train_samples: int | None = None
    max_eval_samples: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_seq_length", "batch_size", "eval_batch_size", "seeds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not self.epochs > 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.protocol == "glue_sane" and self.epochs > 5:
            raise ValueError(f"epochs {self.epochs} breaks the glue_sane protocol (at most 5); use --protocol run_glue")

    def as_dict(self) -> dict:
        return asdict(self)


PROTOCOLS: dict[str, FinetuneSettings] = {
    "run_glue": FinetuneSettings(protocol="run_glue"),
    "glue_sane": FinetuneSettings(
        protocol="glue_sane", epochs=5.0, warmup_ratio=0.1, weight_decay=0.01, seeds=5,
    ),
}

PROTOCOL_SOURCES = {
    "run_glue": "BERT Hash seed 000: transformers run_glue.py, seq 128, batch 32, lr 1e-4, 4 epochs",
    "glue_sane": "UltraFastBERT seed 001 / crammedBERT GLUE-sane: <= 5 epochs, one set for all tasks, median of seeds",
}


def protocol_settings(name: str, **overrides) -> FinetuneSettings:
    """The settings of protocol ``name`` with ``overrides`` (``None`` values are ignored).

    Unknown protocols and unknown override names fail with the valid choices listed.
    """
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; valid protocols: {', '.join(PROTOCOLS)}")
    valid = {f.name for f in fields(FinetuneSettings)} - {"protocol"}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}; valid settings: {', '.join(sorted(valid))}")
    return replace(PROTOCOLS[name], **{key: value for key, value in overrides.items() if value is not None})
