"""Fine-tune one encoder on one GLUE task with ``transformers.Trainer``, and score it.

The model is any checkpoint ``AutoModelForSequenceClassification`` can load: a leanbert
pretraining run folder (its ``final/`` MLM weights + tokenizer; the pooler and classifier start random), any
BERT-family folder, or a hub name. The head gets the task's labels (``num_labels`` 1 and
``problem_type="regression"`` for stsb), then ``Trainer`` trains it with the protocol's settings
and predicts every validation split, scored by :mod:`leanbert.data.glue_metrics`.

Work is split so that every check runs before any training: :func:`load_model_source` (config,
weights present, tokenizer fits the vocabulary and the position table) and :func:`prepare_task`
(the task's files parsed and validated whole, then tokenized) raise on bad input;
:func:`finetune_task` only trains. :func:`finetune` chains them for one task and writes its
output folder atomically.

Cost: ``epochs x train rows`` forward+backward passes plus one forward pass per validation row;
memory is the model, AdamW's two moments, and one padded batch of activations.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from torch.utils.data import SequentialSampler
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
    PretrainedConfig,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_pt_utils import LengthGroupedSampler

from leanbert.atomic_io import atomic_directory, atomic_write_json, atomic_write_text
from leanbert.checkpoint import load_config
from leanbert.data.glue import GlueTask, get_task, glue_task_folder, load_glue_task, tokenize_glue
from leanbert.data.glue_metrics import MAIN_SCORE_KEY, make_compute_metrics
from leanbert.data.records import DataError
from leanbert.local_data import find_data_root, named_data_root
from leanbert.tokenizer import check_tokenizer_fits, load_tokenizer
from leanbert.train.decay_exemptions import DecayExemptionsMixin
from leanbert.train.pretrain import FINAL_DIR_NAME
from leanbert.train.glue_protocols import FinetuneSettings, protocol_settings

RESULTS_FILE = "results.json"
PREDICTION_FORMATS = ("jsonl", "tsv")


# --------------------------------------------------------------------------- where things are


def resolve_glue_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """The folder holding ``<task>/`` GLUE data, or None for the Hugging Face hub.

    ``data_dir`` may be that folder or a data root with a ``glue/`` subfolder (such as
    ``shared/data``). Without it, :func:`leanbert.local_data.find_data_root`'s ``glue/`` is used
    when present ($LEANBERT_DATA, or ``../shared/data`` of a checkout), else the hub; a
    $LEANBERT_DATA without ``glue/`` is an error rather than a silent hub download.
    """
    if data_dir is not None:
        path = Path(data_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"--data-dir {path}: no such folder")
        return path / "glue" if (path / "glue").is_dir() else path
    root = find_data_root(None)
    if root is not None and (root / "glue").is_dir():
        return root / "glue"
    named = named_data_root(None)
    if root is not None and named:
        raise FileNotFoundError(f"{named}: no glue folder; add it or unset the variable")
    return None


def resolve_model_dir(model: str | os.PathLike) -> tuple[str, Path | None]:
    """(the checkpoint to load, the local folder our outputs go beside, if any).

    A ``leanbert pretrain`` run folder keeps its model in ``final/``: given the run folder, the
    model is loaded from ``final/`` while results default to ``<run>/glue``, where the report looks.
    """
    path = Path(model)
    if not path.is_dir():
        return str(model), None
    if not (path / "config.json").is_file() and (path / FINAL_DIR_NAME / "config.json").is_file():
        return str(path / FINAL_DIR_NAME), path
    return str(path), path


def check_output_dir(output_dir: str | os.PathLike, marker: str) -> Path:
    """Refuse an existing, non-empty folder that is not an earlier output of ours (it would be replaced).

    ``marker`` is the results file our outputs always contain.
    """
    path = Path(output_dir)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"output dir {path} is a file")
        if any(path.iterdir()) and not (path / marker).is_file():
            raise ValueError(
                f"output dir {path} exists and holds other files (no {marker}); it would be replaced. "
                "Choose another --output-dir"
            )
    return path


# --------------------------------------------------------------------------- checks before training


@dataclass(frozen=True)
class ModelSource:
    """A checkpoint to fine-tune, checked: its name or folder, config and tokenizer."""

    name: str
    config: PretrainedConfig
    tokenizer: PreTrainedTokenizerBase


def load_model_source(model: str | os.PathLike, tokenizer: str | os.PathLike | None = None,
                      max_seq_length: int = 128) -> ModelSource:
    """Check that ``model`` can be fine-tuned, without loading its weights.

    A local folder must hold a config and readable weights; the tokenizer (``tokenizer``, else the
    model folder) must not emit ids beyond the model's ``vocab_size``, and ``max_seq_length`` must
    fit ``max_position_embeddings``. Raises ``ValueError``/``FileNotFoundError`` naming the
    file or field.
    """
    name = str(model)
    config = load_config(name, label="--model ")
    tokenizer_name = str(tokenizer) if tokenizer is not None else name
    try:
        loaded_tokenizer = load_tokenizer(tokenizer_name)
    except (OSError, ValueError) as err:
        hint = "" if tokenizer is not None else " (pass --tokenizer when the model folder has none)"
        raise FileNotFoundError(f"tokenizer {tokenizer_name}: {str(err).splitlines()[0]}{hint}") from None
    try:
        check_tokenizer_fits(loaded_tokenizer, config.vocab_size)
    except ValueError as err:
        raise ValueError(f"tokenizer {tokenizer_name} does not fit model {name}: {err}") from None
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and max_seq_length > positions:
        raise ValueError(
            f"max_seq_length {max_seq_length} exceeds the model's max_position_embeddings {positions} ({name})"
        )
    return ModelSource(name=name, config=config, tokenizer=loaded_tokenizer)


@dataclass
class TaskData:
    """One task's validated, tokenized splits: ``train`` and each validation split (keeping ``idx``)."""

    task: GlueTask
    train: Dataset
    evaluation: dict[str, Dataset]
    source: str  # a folder, or the hub dataset


def prepare_task(task: str, glue_dir: Path | None, tokenizer: PreTrainedTokenizerBase,
                 settings: FinetuneSettings, type_vocab_size: int | None = None) -> TaskData:
    """Load and validate a task's files whole (DataError names ``file:line``), then tokenize them.

    Truncation to ``max_train_samples``/``max_eval_samples`` keeps the first rows, as run_glue.py does.
    A model with at most one token type (``type_vocab_size`` <= 1: Bort, RoBERTa-style) gets no
    ``token_type_ids``: a BERT tokenizer marks a pair's second text 1, past the model's table.
    """
    glue_task = get_task(task)
    splits = load_glue_task(glue_task.name, glue_dir)
    source = str(glue_task_folder(task, glue_dir)) if glue_dir is not None else f"hub:nyu-mll/glue/{glue_task.name}"
    missing = [split for split in glue_task.splits if split not in splits]
    if missing:
        raise DataError(f"{source}: task {glue_task.name} has no {', '.join(missing)} split (found: {', '.join(splits)})")
    for split, limit in [("train", settings.max_train_samples)] + [
        (split, settings.max_eval_samples) for split in glue_task.validation_splits
    ]:
        if limit is not None and limit < len(splits[split]):
            splits[split] = splits[split].select(range(limit))
    tokenized = tokenize_glue(splits, tokenizer, glue_task.name, max_length=settings.max_seq_length)
    if type_vocab_size is not None and type_vocab_size <= 1 and "token_type_ids" in tokenized["train"].column_names:
        tokenized = tokenized.remove_columns("token_type_ids")
    return TaskData(
        task=glue_task,
        train=tokenized["train"],
        evaluation={split: tokenized[split] for split in glue_task.validation_splits},
        source=source,
    )


# --------------------------------------------------------------------------- training


def _task_config(source: ModelSource, task: GlueTask) -> PretrainedConfig:
    labels = task.label_names or ("score",)
    return AutoConfig.from_pretrained(
        source.name,
        num_labels=task.num_labels,
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
        problem_type="regression" if task.is_regression else "single_label_classification",
    )


def _training_arguments(settings: FinetuneSettings, seed: int, work_dir: Path) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(work_dir),
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.eval_batch_size,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        warmup_steps=settings.warmup_ratio if settings.warmup_ratio > 0 else 0,
        weight_decay=settings.weight_decay,
        lr_scheduler_type=settings.lr_scheduler,
        train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
        seed=seed,
        # Scores come from the end-of-training predictions below; checkpoints of a GLUE run are
        # rarely wanted and cost disk per seed (--save-model keeps the final one).
        save_strategy="no",
        eval_strategy="no",
        # Ten progress lines per run (a float < 1 is a fraction of the steps); they also land in
        # results.json's log_history, which `leanbert report` can plot.
        logging_strategy="steps",
        logging_steps=0.1,
        logging_nan_inf_filter=False,  # a diverged run's NaN losses must show, not be logged as 0.0
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,  # CPU training: pinning only warns
    )


class InOrderTrainer(DecayExemptionsMixin, Trainer):
    """Trainer whose evaluation keeps the dataset's row order.

    With length-grouped training, transformers 5 groups the evaluation batches by length too
    (`Trainer._get_eval_sampler`). The metrics do not mind (labels move with their rows), but the
    prediction files pair each prediction with its row by position.
    """

    def _get_eval_sampler(self, eval_dataset):
        sampler = super()._get_eval_sampler(eval_dataset)
        return SequentialSampler(eval_dataset) if isinstance(sampler, LengthGroupedSampler) else sampler


def _split_suffix(task: GlueTask, split: str) -> str:
    """"" for the only validation split, "_matched"/"_mismatched" for mnli's two."""
    return "" if len(task.validation_splits) == 1 else "_" + split.removeprefix("validation_")


def _prediction_rows(task: GlueTask, dataset: Dataset, predictions) -> list[dict]:
    rows = []
    for idx, label, prediction in zip(dataset["idx"], dataset["label"], predictions):
        if task.is_regression:
            rows.append({"idx": int(idx), "label": float(label), "prediction": float(prediction)})
        else:
            rows.append({"idx": int(idx), "label": int(label), "prediction": int(prediction),
                         "prediction_name": task.label_names[int(prediction)]})
    return rows


def _write_predictions(rows: list[dict], path: Path, file_format: str) -> None:
    if file_format == "jsonl":
        atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
    else:
        atomic_write_text(path, "idx\tlabel\tprediction\n" + "".join(
            f"{row['idx']}\t{row['label']}\t{row['prediction']}\n" for row in rows))


def finetune_task(source: ModelSource, data: TaskData, settings: FinetuneSettings, seed: int, run_dir: Path,
                  save_predictions: bool = False, predictions_format: str = "jsonl",
                  save_model: bool = False) -> dict:
    """Train a fresh head + encoder from ``source`` on ``data`` with ``seed``; return the run's results.

    Writes into ``run_dir`` (which the caller makes atomic): ``results.json``, and with the flags
    ``predictions_<split>.{jsonl,tsv}`` (idx, gold label, prediction) and ``model/``.
    """
    if predictions_format not in PREDICTION_FORMATS:
        raise ValueError(f"predictions_format must be one of {', '.join(PREDICTION_FORMATS)}, got {predictions_format!r}")
    task = data.task
    run_dir.mkdir(parents=True, exist_ok=True)
    set_seed(seed)  # the new pooler/classifier weights are drawn in from_pretrained, so seed them too
    model = AutoModelForSequenceClassification.from_pretrained(
        source.name, config=_task_config(source, task), ignore_mismatched_sizes=True,
    )
    trainer = InOrderTrainer(
        model=model,
        args=_training_arguments(settings, seed, run_dir / "trainer"),
        train_dataset=data.train,
        data_collator=DataCollatorWithPadding(source.tokenizer),
        processing_class=source.tokenizer,
        compute_metrics=make_compute_metrics(task.name),
    )
    train_output = trainer.train()

    metrics: dict[str, float] = {}
    split_scores: list[float] = []
    evaluation: dict[str, dict] = {}
    for split, dataset in data.evaluation.items():
        output = trainer.predict(dataset, metric_key_prefix="eval")
        scores = {key.removeprefix("eval_"): float(value) for key, value in output.metrics.items()}
        evaluation[split] = {"examples": len(dataset), **scores}
        for name in task.metric_names:
            metrics[name + _split_suffix(task, split)] = scores[name]
        split_scores.append(scores[MAIN_SCORE_KEY])
        if save_predictions:
            logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
            predicted = logits.reshape(-1) if task.is_regression else logits.argmax(axis=-1)
            suffix = "jsonl" if predictions_format == "jsonl" else "tsv"
            _write_predictions(_prediction_rows(task, dataset, predicted),
                               run_dir / f"predictions_{split}.{suffix}", predictions_format)
    if save_model:
        trainer.save_model(str(run_dir / "model"))
    # Trainer leaves an empty work folder behind when it saves nothing.
    if (run_dir / "trainer").is_dir() and not any((run_dir / "trainer").iterdir()):
        (run_dir / "trainer").rmdir()

    train_metrics = train_output.metrics
    result = {
        "task": task.name,
        "seed": seed,
        "model": source.name,
        "data": data.source,
        "protocol": settings.protocol,
        "settings": settings.as_dict(),
        "metrics": metrics,
        "main_score": sum(split_scores) / len(split_scores),
        "evaluation": evaluation,
        "train": {
            "examples": len(data.train),
            "steps": int(train_output.global_step),
            "loss": float(train_output.training_loss),
            "runtime_s": float(train_metrics.get("train_runtime", math.nan)),
            "samples_per_second": float(train_metrics.get("train_samples_per_second", math.nan)),
        },
        "log_history": trainer.state.log_history,
    }
    atomic_write_json(run_dir / RESULTS_FILE, result)
    return result


# --------------------------------------------------------------------------- one task, end to end


def default_output_dir(model: str | os.PathLike, leaf: str) -> Path:
    """``<run or model folder>/<leaf>`` for a local model (next to the run it belongs to), else ``runs/<leaf>/<name>``."""
    name, run = resolve_model_dir(model)
    if run is not None:
        return run / leaf
    return Path("runs") / leaf / name.replace("/", "__")


def finetune(model: str | os.PathLike, task: str, data_dir: str | os.PathLike | None = None,
             output_dir: str | os.PathLike | None = None, protocol: str = "run_glue", seed: int = 42,
             tokenizer: str | os.PathLike | None = None, save_predictions: bool = False,
             predictions_format: str = "jsonl", save_model: bool = False,
             log: Callable[[str], None] | None = None, **overrides) -> dict:
    """Fine-tune ``model`` on one GLUE ``task`` and write ``<output_dir>/results.json`` (atomically).

    ``overrides`` are :class:`FinetuneSettings` fields (``epochs``, ``learning_rate``,
    ``max_train_samples``, ...). Everything is checked before training; on any error the output
    folder is left as it was. Returns the results dict.
    """
    settings = protocol_settings(protocol, **overrides)
    source = load_model_source(resolve_model_dir(model)[0], tokenizer, settings.max_seq_length)
    glue_dir = resolve_glue_dir(data_dir)
    out = check_output_dir(output_dir or default_output_dir(model, f"finetune/{get_task(task).name}"),
                           RESULTS_FILE)
    data = prepare_task(task, glue_dir, source.tokenizer, settings, getattr(source.config, "type_vocab_size", None))
    if log:
        log(f"fine-tuning {source.name} on {data.task.name} ({len(data.train)} train rows from {data.source}), "
            f"protocol {settings.protocol}, seed {seed}")
    with atomic_directory(out) as tmp:
        result = finetune_task(source, data, settings, seed, tmp, save_predictions=save_predictions,
                               predictions_format=predictions_format, save_model=save_model)
    result["output_dir"] = str(out)
    return result
