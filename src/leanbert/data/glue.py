"""GLUE tasks: the registry, loading from hub/JSON Lines/original TSV, validation, tokenization.

Every task follows the Hugging Face ``nyu-mll/glue`` schema: its text fields,
an integer ``label`` (a float 0..5 for the regression task stsb) and ``idx``.
Three sources give the same ``DatasetDict``:

* the hub, ``datasets.load_dataset("nyu-mll/glue", task)`` (``data_dir=None``);
* ``<data_dir>/<task>/{train,validation}.jsonl`` (mnli: ``validation_matched``
  and ``validation_mismatched``);
* the original GLUE TSV files in ``<data_dir>/<task>/original/``,
  ``<data_dir>/<task>/`` or ``<data_dir>/<GLUE folder name>/`` (e.g. ``SST-2``),
  split on tabs without quote handling (``csv.QUOTE_NONE``), like the HF loader.

Local files are validated whole, line by line, before a ``Dataset`` is built,
so bad input fails before training starts, with a :class:`DataError` naming
``file:line`` and the field. Cost: one pass over each file, holding its rows in
memory (sst2 train, 67k rows, loads in about half a second).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, load_dataset
from transformers import PreTrainedTokenizerBase

from leanbert.data.records import DataError, iter_jsonl, require_text, utf8_lines

HUB_DATASET = "nyu-mll/glue"
STSB_SCORE_RANGE = (0.0, 5.0)
# MRPC as distributed by SentEval/GLUE: all pairs, and the ids of the dev pairs.
_MSR_TRAIN, _MSR_DEV_IDS = "msr_paraphrase_train.txt", "dev_ids.tsv"


@dataclass(frozen=True)
class TsvLayout:
    """Where a task's original GLUE TSV files keep each schema field.

    ``columns`` maps schema fields (text fields and ``label``) to a header name,
    or to a 0-based column position when the file has no header (CoLA).
    """

    split_files: dict[str, str]
    columns: dict[str, str | int]
    has_header: bool = True


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task in the Hugging Face ``glue`` schema."""

    name: str
    glue_folder: str  # the folder name in the official GLUE download, e.g. "SST-2"
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...]  # empty for the regression task
    metric_names: tuple[str, ...]
    tsv: TsvLayout
    validation_splits: tuple[str, ...] = ("validation",)

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_names)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self.validation_splits)

    def features(self) -> Features:
        label = Value("float32") if self.is_regression else ClassLabel(names=list(self.label_names))
        return Features(
            {**{name: Value("string") for name in self.text_fields}, "label": label, "idx": Value("int32")}
        )


_TRAIN_DEV = {"train": "train.tsv", "validation": "dev.tsv"}

GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in [
        GlueTask(
            name="cola",
            glue_folder="CoLA",
            text_fields=("sentence",),
            label_names=("unacceptable", "acceptable"),
            metric_names=("matthews_correlation",),
            # No header: source, label, original label, sentence.
            tsv=TsvLayout(_TRAIN_DEV, {"label": 1, "sentence": 3}, has_header=False),
        ),
        GlueTask(
            name="sst2",
            glue_folder="SST-2",
            text_fields=("sentence",),
            label_names=("negative", "positive"),
            metric_names=("accuracy",),
            tsv=TsvLayout(_TRAIN_DEV, {"sentence": "sentence", "label": "label"}),
        ),
        GlueTask(
            name="mrpc",
            glue_folder="MRPC",
            text_fields=("sentence1", "sentence2"),
            label_names=("not_equivalent", "equivalent"),
            metric_names=("accuracy", "f1"),
            # Used for train.tsv/dev.tsv; msr_paraphrase_train.txt + dev_ids.tsv are
            # preferred when present (see _msr_paraphrase_splits).
            tsv=TsvLayout(_TRAIN_DEV, {"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"}),
        ),
        GlueTask(
            name="qqp",
            glue_folder="QQP",
            text_fields=("question1", "question2"),
            label_names=("not_duplicate", "duplicate"),
            metric_names=("accuracy", "f1"),
            tsv=TsvLayout(_TRAIN_DEV, {"question1": "question1", "question2": "question2", "label": "is_duplicate"}),
        ),
        GlueTask(
            name="stsb",
            glue_folder="STS-B",
            text_fields=("sentence1", "sentence2"),
            label_names=(),
            metric_names=("pearson", "spearmanr"),
            tsv=TsvLayout(_TRAIN_DEV, {"sentence1": "sentence1", "sentence2": "sentence2", "label": "score"}),
        ),
        GlueTask(
            name="mnli",
            glue_folder="MNLI",
            text_fields=("premise", "hypothesis"),
            label_names=("entailment", "neutral", "contradiction"),
            metric_names=("accuracy",),
            tsv=TsvLayout(
                {
                    "train": "train.tsv",
                    "validation_matched": "dev_matched.tsv",
                    "validation_mismatched": "dev_mismatched.tsv",
                },
                {"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"},
            ),
            validation_splits=("validation_matched", "validation_mismatched"),
        ),
        GlueTask(
            name="qnli",
            glue_folder="QNLI",
            text_fields=("question", "sentence"),
            label_names=("entailment", "not_entailment"),
            metric_names=("accuracy",),
            tsv=TsvLayout(_TRAIN_DEV, {"question": "question", "sentence": "sentence", "label": "label"}),
        ),
        GlueTask(
            name="rte",
            glue_folder="RTE",
            text_fields=("sentence1", "sentence2"),
            label_names=("entailment", "not_entailment"),
            metric_names=("accuracy",),
            tsv=TsvLayout(_TRAIN_DEV, {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}),
        ),
        GlueTask(
            name="wnli",
            glue_folder="WNLI",
            text_fields=("sentence1", "sentence2"),
            # WNLI's TSV uses 1 = entailment, and the HF schema keeps those ids.
            label_names=("not_entailment", "entailment"),
            metric_names=("accuracy",),
            tsv=TsvLayout(_TRAIN_DEV, {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}),
        ),
    ]
}


def get_task(name: str) -> GlueTask:
    """Look a task up by its HF name (case-insensitive); unknown names list the valid ones."""
    task = GLUE_TASKS.get(name.lower()) if isinstance(name, str) else None
    if task is None:
        raise DataError(f"unknown GLUE task {name!r}; valid tasks: {', '.join(GLUE_TASKS)}")
    return task


# --------------------------------------------------------------------------- validation


def _check_label(task: GlueTask, label: object, where: str) -> int | float:
    if task.is_regression:
        low, high = STSB_SCORE_RANGE
        if isinstance(label, bool) or not isinstance(label, (int, float)) or not math.isfinite(label):
            raise DataError(f"{where}: label {label!r} is not a number for task {task.name} ({low}..{high})")
        if not low <= label <= high:
            raise DataError(f"{where}: label {label} out of range for task {task.name} ({low}..{high})")
        return float(label)
    high = task.num_labels - 1
    if isinstance(label, bool) or not isinstance(label, int):
        raise DataError(
            f"{where}: label {label!r} is not an integer class id for task {task.name} "
            f"(0..{high}: {', '.join(task.label_names)})"
        )
    if not 0 <= label <= high:
        raise DataError(f"{where}: label {label} out of range for task {task.name} (0..{high})")
    return label


def _validated_example(task: GlueTask, record: dict, default_idx: int, where: str) -> dict:
    """The schema fields of one record, checked; raises DataError naming ``where`` and the field."""
    example = {name: require_text(record, name, where, f" for task {task.name}") for name in task.text_fields}
    if "label" not in record:
        raise DataError(f"{where}: missing field 'label' for task {task.name}")
    example["label"] = _check_label(task, record["label"], where)
    idx = record.get("idx", default_idx)
    if isinstance(idx, bool) or not isinstance(idx, int):
        raise DataError(f"{where}: 'idx' must be an integer, got {idx!r}")
    example["idx"] = idx
    return example


def _dataset_from_examples(task: GlueTask, examples: Iterable[dict], path: Path) -> Dataset:
    columns: dict[str, list] = {name: [] for name in task.features()}
    for example in examples:
        for name, values in columns.items():
            values.append(example[name])
    if not columns["label"]:
        raise DataError(f"{path}: no examples")
    return Dataset.from_dict(columns, features=task.features())


# --------------------------------------------------------------------------- JSON Lines


def _jsonl_examples(task: GlueTask, path: Path) -> Iterator[dict]:
    for row, (line_number, record) in enumerate(iter_jsonl(path)):
        yield _validated_example(task, record, default_idx=row, where=f"{path}:{line_number}")


def _jsonl_split_files(task: GlueTask, folder: Path) -> dict[str, Path]:
    return {split: folder / f"{split}.jsonl" for split in task.splits if (folder / f"{split}.jsonl").is_file()}


# --------------------------------------------------------------------------- original TSV


def _tsv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, cells)``; tabs split cells and quotes are ordinary characters."""
    with path.open("rb") as binary:
        reader = csv.reader(utf8_lines(path, binary), delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            for cells in reader:
                if cells:
                    yield reader.line_num, cells
        except csv.Error as error:  # e.g. a cell over csv.field_size_limit()
            raise DataError(f"{path}:{reader.line_num}: {error}") from None


def _parse_tsv_label(task: GlueTask, text: str) -> int | float | str:
    """A TSV label cell as the JSON value it stands for: a class name maps to its id."""
    if text in task.label_names:
        return task.label_names.index(text)
    try:
        return float(text) if task.is_regression else int(text)
    except ValueError:
        return text  # _check_label reports it with the valid range


def _tsv_records(task: GlueTask, path: Path, layout: TsvLayout) -> Iterator[tuple[str, dict]]:
    """Yield ``(where, record)`` with every layout column of each data row, by name.

    ``where`` is ``path:line``; the label cell is already converted (class name -> id).
    """
    rows = _tsv_rows(path)
    positions = dict(layout.columns)
    if not layout.has_header:
        width = max(positions.values()) + 1
    else:
        try:
            _, header = next(rows)
        except StopIteration:
            raise DataError(f"{path}: empty file (no header)") from None
        missing = [name for name in positions.values() if name not in header]
        if missing:
            raise DataError(f"{path}:1: header lacks column(s) {', '.join(map(repr, missing))} for task {task.name}")
        positions = {key: header.index(name) for key, name in positions.items()}
        width = len(header)
    for line_number, cells in rows:
        where = f"{path}:{line_number}"
        if len(cells) < width or (layout.has_header and len(cells) > width):
            # More cells than the header usually means a tab inside a text, which
            # would silently shift every later column.
            raise DataError(f"{where}: expected {width} tab-separated columns, got {len(cells)}")
        record = {key: cells[position] for key, position in positions.items()}
        record["label"] = _parse_tsv_label(task, record["label"])
        yield where, record


def _tsv_examples(task: GlueTask, path: Path) -> Iterator[dict]:
    # idx is the 0-based data row, as in the HF glue loader.
    for row, (where, record) in enumerate(_tsv_records(task, path, task.tsv)):
        yield _validated_example(task, record, default_idx=row, where=where)


def _msr_paraphrase_splits(task: GlueTask, folder: Path) -> DatasetDict:
    """MRPC rebuilt the way GLUE and HF do: msr_paraphrase_train.txt split by dev_ids.tsv.

    ``idx`` is the row's position in msr_paraphrase_train.txt, as in HF, so the
    validation ids are not contiguous.
    """
    source, dev_ids_file = folder / _MSR_TRAIN, folder / _MSR_DEV_IDS
    dev_pairs = set()
    for line_number, cells in _tsv_rows(dev_ids_file):
        if len(cells) != 2:
            raise DataError(f"{dev_ids_file}:{line_number}: expected 2 tab-separated ids, got {len(cells)}")
        dev_pairs.add((cells[0], cells[1]))
    layout = TsvLayout({}, {**task.tsv.columns, "id1": "#1 ID", "id2": "#2 ID"})
    examples: dict[str, list[dict]] = {"train": [], "validation": []}
    for row, (where, record) in enumerate(_tsv_records(task, source, layout)):
        split = "validation" if (record["id1"], record["id2"]) in dev_pairs else "train"
        examples[split].append(_validated_example(task, record, default_idx=row, where=where))
    return DatasetDict({split: _dataset_from_examples(task, rows, source) for split, rows in examples.items()})


def _has_msr_paraphrase(task: GlueTask, folder: Path) -> bool:
    return task.name == "mrpc" and (folder / _MSR_TRAIN).is_file() and (folder / _MSR_DEV_IDS).is_file()


def _tsv_split_files(task: GlueTask, folder: Path) -> dict[str, Path]:
    return {
        split: folder / file_name for split, file_name in task.tsv.split_files.items() if (folder / file_name).is_file()
    }


# --------------------------------------------------------------------------- locating and loading


@dataclass(frozen=True)
class _TaskFiles:
    file_format: str  # "jsonl" or "tsv"
    folder: Path
    splits: tuple[str, ...]


FILE_FORMATS = ("auto", "jsonl", "tsv")


def _locate(task: GlueTask, data_dir: Path, file_format: str) -> _TaskFiles | str:
    """Find a task's files under ``data_dir``; a string is the reason nothing was found."""
    if file_format not in FILE_FORMATS:
        raise ValueError(f"file_format must be one of {', '.join(FILE_FORMATS)}, got {file_format!r}")
    folders = [data_dir / name for name in dict.fromkeys((task.name, task.glue_folder))]
    for folder in folders:
        if file_format in ("auto", "jsonl"):
            jsonl = _jsonl_split_files(task, folder)
            if jsonl:
                return _TaskFiles("jsonl", folder, tuple(jsonl))
        if file_format in ("auto", "tsv"):
            for tsv_folder in (folder / "original", folder):
                if _has_msr_paraphrase(task, tsv_folder):
                    return _TaskFiles("tsv", tsv_folder, ("train", "validation"))
                tsv = _tsv_split_files(task, tsv_folder)
                if tsv:
                    return _TaskFiles("tsv", tsv_folder, tuple(tsv))
    jsonl_names = "/".join(f"{split}.jsonl" for split in task.splits)
    tsv_names = "/".join(task.tsv.split_files.values())
    if task.name == "mrpc":
        tsv_names += f" or {_MSR_TRAIN}+{_MSR_DEV_IDS}"
    looked_for = {"auto": f"{jsonl_names} or {tsv_names}", "jsonl": jsonl_names, "tsv": tsv_names}[file_format]
    places = ", ".join(f"{folder.name}/" for folder in folders)
    return f"no {task.name} data in {data_dir} (looked for {looked_for} in {places})"


def glue_task_folder(task: str, data_dir: str | Path, *, file_format: str = "auto") -> Path:
    """The folder ``load_glue_task`` reads the task from (e.g. ``SST-2/`` or ``mrpc/original/``)."""
    found = _locate(get_task(task), Path(data_dir), file_format)
    if isinstance(found, str):
        raise DataError(found)
    return found.folder


def load_glue_task(task: str, data_dir: str | Path | None = None, *, file_format: str = "auto") -> DatasetDict:
    """Load one GLUE task as a ``DatasetDict`` in the HF ``glue`` schema, validated.

    ``data_dir=None`` loads ``nyu-mll/glue`` from the hub (test splits, which
    have no labels, are left out). Otherwise the task is read from
    ``data_dir`` as JSON Lines or original TSV (``file_format`` "auto" prefers
    JSON Lines); only the splits present on disk are returned.
    Raises :class:`DataError` for an unknown task, missing files or bad input.
    """
    glue_task = get_task(task)
    if data_dir is None:
        hub = load_dataset(HUB_DATASET, glue_task.name)
        return DatasetDict({split: hub[split] for split in glue_task.splits if split in hub})
    found = _locate(glue_task, Path(data_dir), file_format)
    if isinstance(found, str):
        raise DataError(found)
    if found.file_format == "jsonl":
        return DatasetDict(
            {
                split: _dataset_from_examples(glue_task, _jsonl_examples(glue_task, path), path)
                for split, path in _jsonl_split_files(glue_task, found.folder).items()
            }
        )
    if _has_msr_paraphrase(glue_task, found.folder):
        return _msr_paraphrase_splits(glue_task, found.folder)
    return DatasetDict(
        {
            split: _dataset_from_examples(glue_task, _tsv_examples(glue_task, path), path)
            for split, path in _tsv_split_files(glue_task, found.folder).items()
        }
    )


def available_tasks(
    data_dir: str | Path | None,
    tasks: Iterable[str] | None = None,
    *,
    require_train: bool = True,
) -> tuple[list[str], dict[str, str]]:
    """Split ``tasks`` (default: all of GLUE) into those with data and those skipped, with the reason.

    A task is present when all its validation splits exist (mnli: matched and mismatched), and
    ``train`` when ``require_train``. Files are only located here, not parsed: call
    :func:`load_glue_task` on each present task before training to validate.
    With ``data_dir=None`` (the hub) every task counts as present. Unknown task
    names raise :class:`DataError` rather than being skipped.
    """
    names = [get_task(name).name for name in (tasks if tasks is not None else GLUE_TASKS)]
    if data_dir is None:
        return names, {}
    present: list[str] = []
    skipped: dict[str, str] = {}
    for name in names:
        task = GLUE_TASKS[name]
        found = _locate(task, Path(data_dir), "auto")
        if isinstance(found, str):
            skipped[name] = found
            continue
        required = (("train",) if require_train else ()) + task.validation_splits
        missing = [split for split in required if split not in found.splits]
        if missing:
            skipped[name] = (
                f"missing split(s) {', '.join(missing)} in {found.folder} (found: {', '.join(found.splits)})"
            )
        else:
            present.append(name)
    return present, skipped


# --------------------------------------------------------------------------- tokenizing


def tokenize_glue(
    dataset_dict: DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    task: str,
    max_length: int = 128,
    num_proc: int | None = None,
) -> DatasetDict:
    """Tokenize a task's text field(s) (as a pair for two-text tasks), truncating to ``max_length``.

    Text columns are replaced by the tokenizer's outputs; ``label`` and ``idx``
    stay. No padding: a collator such as ``DataCollatorWithPadding`` pads each
    batch to its own longest row, which is far shorter than ``max_length`` for
    most GLUE batches.
    """
    glue_task = get_task(task)
    missing = [name for name in glue_task.text_fields if name not in next(iter(dataset_dict.values())).column_names]
    if missing:
        raise DataError(f"dataset lacks text field(s) {', '.join(missing)} for task {glue_task.name}")

    def encode(batch: dict) -> dict:
        texts = [batch[name] for name in glue_task.text_fields]
        return tokenizer(*texts, truncation=True, max_length=max_length)

    return dataset_dict.map(
        encode,
        batched=True,
        remove_columns=list(glue_task.text_fields),
        num_proc=num_proc,
        desc=f"Tokenizing {glue_task.name}",
    )
