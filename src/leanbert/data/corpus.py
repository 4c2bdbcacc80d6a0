"""Pretraining corpora: documents in, fixed-length BERT blocks out.

The pipeline is four ``datasets`` steps, each cached by fingerprint under
``cache_dir`` so a re-run with the same inputs is free:

1. :func:`load_corpus` -> one row per document, one column ``text``.
   A ``.txt`` file or a folder of them uses the shared corpus layout (one
   paragraph per line, documents separated by a blank line); the paragraphs of
   a document are joined with ``"\\n"``. JSON/JSON Lines/CSV/Parquet files and
   hub datasets give one document per row, read from ``text_column``.
2. :func:`split_documents` -> ``train``/``validation`` by *documents* (seeded),
   so no document feeds both splits.
3. :func:`tokenize_documents` -> ``input_ids`` without special tokens plus
   ``word_start`` (1 where a token begins a word, from the fast tokenizer's
   ``word_ids``), the information whole-word masking needs.
4. :func:`pack_blocks` -> blocks of exactly ``block_size`` tokens,
   ``[CLS] <block_size-2 tokens> [SEP]`` as in BERT pretraining, with
   ``input_ids``, ``attention_mask``, ``special_tokens_mask``, ``word_start`` and
   ``document_id``.

Document boundaries are respected: a block never mixes two documents. A long
document becomes several blocks; its last, partial block is kept and padded
(``[PAD]``, attention_mask 0, special_tokens_mask 1) when it holds at least
``min_tail_tokens`` content tokens (default ``block_size // 4``), and dropped
otherwise, because a block that is mostly padding costs a full block of compute
for a handful of masked predictions.

Cost: tokenization is O(corpus characters) and dominates; it runs in
``num_proc`` processes. Packing is O(tokens). Disk: about 4 bytes per token for
ids plus 3 bytes per token for the masks, per cached step.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetDict, Features, Sequence, Value, load_dataset
from datasets.exceptions import DatasetGenerationError
from datasets.utils import logging as datasets_logging
from transformers import PreTrainedTokenizerBase

from leanbert.data.records import DataError, iter_jsonl, require_text
from leanbert.tokenizer import load_tokenizer

TEXT_LAYOUT_SUFFIXES = (".txt",)
# file suffix -> the `datasets` builder that reads it
DATA_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}

TOKENIZED_FEATURES = Features({"input_ids": Sequence(Value("int32")), "word_start": Sequence(Value("int8"))})
BLOCK_FEATURES = Features(
    {
        "input_ids": Sequence(Value("int32")),
        "attention_mask": Sequence(Value("int8")),
        "special_tokens_mask": Sequence(Value("int8")),
        "word_start": Sequence(Value("int8")),
        "document_id": Value("int64"),
    }
)


# --------------------------------------------------------------------------- loading


def _looks_like_local_path(source: str) -> bool:
    # Hub ids are "name" or "org/name"; a known suffix or a path anchor means the
    # caller meant a local file, so a typo should fail here, not as a download.
    return source.startswith(("/", "./", "../", "~")) or Path(source).suffix in (
        *TEXT_LAYOUT_SUFFIXES,
        *DATA_FILE_BUILDERS,
    )


def _require_some_text(path: Path) -> None:
    """Raise DataError if a text-layout file has no non-blank line (stops at the first one)."""
    with path.open("rb") as lines:
        for raw in lines:
            if raw.strip():
                return
    raise DataError(f"{path}: empty corpus file (no non-blank line)")


def _documents_from_text_files(paths: list[str], stamps: list[tuple[int, int]]) -> Iterator[dict]:
    """Yield ``{"text": ...}`` per blank-line-separated document of each file.

    ``stamps`` (size, mtime) is unused here; it is part of ``gen_kwargs`` only so
    that the datasets cache fingerprint changes when a file changes.
    """
    del stamps
    for path in paths:
        paragraphs: list[str] = []
        with open(path, "rb") as lines:
            for line_number, raw in enumerate(lines, start=1):
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError as error:
                    raise DataError(f"{path}:{line_number}: not valid UTF-8 ({error.reason})") from None
                if line:
                    paragraphs.append(line)
                elif paragraphs:  # runs of blank lines separate once, never make empty documents
                    yield {"text": "\n".join(paragraphs)}
                    paragraphs = []
        if paragraphs:
            yield {"text": "\n".join(paragraphs)}


def _load_text_layout(paths: list[Path], cache_dir: str | None) -> Dataset:
    for path in paths:
        _require_some_text(path)
    stamps = [(os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths]
    try:
        return Dataset.from_generator(
            _documents_from_text_files,
            gen_kwargs={"paths": [str(p.resolve()) for p in paths], "stamps": stamps},
            features=Features({"text": Value("string")}),
            cache_dir=cache_dir,
        )
    except DatasetGenerationError as error:
        if isinstance(error.__cause__, DataError):
            raise error.__cause__ from None
        raise


def _check_jsonl_texts(path: Path, text_column: str) -> None:
    """Stream a JSON Lines file once so bad lines are reported as ``path:line``."""
    seen_any = False
    for line_number, record in iter_jsonl(path):
        seen_any = True
        require_text(record, text_column, f"{path}:{line_number}")
    if not seen_any:
        raise DataError(f"{path}: empty corpus file (no records)")


def _check_row_texts(documents: Dataset, text_column: str, where: str) -> None:
    """Reject a missing column or empty texts in an already loaded table, naming the row."""
    if text_column not in documents.column_names:
        raise DataError(
            f"{where}: no column '{text_column}' (columns: {', '.join(documents.column_names)}); "
            "pass text_column= to choose one"
        )
    if len(documents) == 0:
        raise DataError(f"{where}: empty corpus (no rows)")
    row = 0
    for batch in documents.select_columns([text_column]).iter(batch_size=10_000):
        for text in batch[text_column]:
            row += 1
            if text is None:  # an empty CSV cell
                raise DataError(f"{where}: row {row}: empty '{text_column}'")
            require_text({text_column: text}, text_column, f"{where}: row {row}")


def _is_json_lines(path: Path) -> bool:
    """Whether the `datasets` json builder reads this .json file as JSON Lines: it does unless its first
    character other than a byte-order mark or whitespace is '['."""
    with path.open("rb") as source:
        chunk = source.read(4096).removeprefix(b"\xef\xbb\xbf")
        while chunk and not chunk.strip():  # only whitespace so far
            chunk = source.read(4096)
    return not chunk.lstrip().startswith(b"[")


def _load_data_file(builder: str, path: Path, cache_dir: str | None) -> Dataset:
    """``load_dataset`` on one local file; a file the reader rejects raises DataError naming it.

    The reader's message is kept because it holds the place when there is one, e.g. pandas' "Expected
    2 fields in line 23, saw 4" (a record number counting the header, not always the file's line).
    """
    # the readers also log their failure ("Failed to read file ..."); the DataError says it once
    verbosity = datasets_logging.get_verbosity()
    datasets_logging.set_verbosity(datasets_logging.CRITICAL)
    try:
        return load_dataset(builder, data_files=str(path), split="train", cache_dir=cache_dir)
    except (DatasetGenerationError, pa.ArrowInvalid) as error:  # ArrowInvalid: a file that is not Parquet
        reason = " ".join(str(error.__cause__ or error).split())
        raise DataError(f"{path}: not readable as {builder.upper()}: {reason}") from None
    finally:
        datasets_logging.set_verbosity(verbosity)


def _as_documents(documents: Dataset, text_column: str) -> Dataset:
    """Keep only the text column, named ``text``."""
    documents = documents.select_columns([text_column])
    if text_column != "text":
        documents = documents.rename_column(text_column, "text")
    return documents


def load_corpus(
    source: str | Path,
    text_column: str = "text",
    *,
    config_name: str | None = None,
    split: str = "train",
    cache_dir: str | Path | None = None,
) -> Dataset:
    """Load a corpus as a ``Dataset`` with one row per document and one column ``text``.

    ``source`` is a ``.txt`` file or a folder of ``.txt`` files in the shared
    corpus layout; a ``.json``/``.jsonl``/``.csv``/``.parquet`` file with a text
    column; or a ``datasets`` hub name (with ``config_name`` and ``split``).

    Raises :class:`DataError` for a missing file, an empty file, an empty text
    (naming file and line, or row), a missing text column or a file its reader
    rejects (a malformed CSV row, a JSON line that does not parse).
    """
    cache_dir = str(cache_dir) if cache_dir is not None else None
    path = Path(source).expanduser()

    if path.is_dir():
        text_files = sorted(p for p in path.iterdir() if p.suffix in TEXT_LAYOUT_SUFFIXES and p.is_file())
        if not text_files:
            raise DataError(f"{path}: folder has no {'/'.join(TEXT_LAYOUT_SUFFIXES)} corpus files")
        return _load_text_layout(text_files, cache_dir)

    if path.is_file():
        if path.suffix in TEXT_LAYOUT_SUFFIXES:
            return _load_text_layout([path], cache_dir)
        builder = DATA_FILE_BUILDERS.get(path.suffix)
        if builder is None:
            known = ", ".join((*TEXT_LAYOUT_SUFFIXES, *DATA_FILE_BUILDERS))
            raise DataError(f"{path}: unknown corpus file type '{path.suffix}' (known: {known})")
        if path.suffix == ".jsonl" or (path.suffix == ".json" and _is_json_lines(path)):
            _check_jsonl_texts(path, text_column)
        documents = _load_data_file(builder, path, cache_dir)
        _check_row_texts(documents, text_column, str(path))
        return _as_documents(documents, text_column)

    if isinstance(source, Path) or _looks_like_local_path(str(source)):
        raise DataError(f"{path}: no such corpus file or folder")

    try:
        documents = load_dataset(str(source), config_name, split=split, cache_dir=cache_dir)
    except (ConnectionError, FileNotFoundError) as error:  # DatasetNotFoundError is a FileNotFoundError
        # a bare relative name ("corpus", "data/wiki") may have been meant as a local folder
        raise DataError(f"{source}: no such corpus file or folder under {Path.cwd()}, and no hub dataset of "
                        f"that name could be loaded ({type(error).__name__}: {error})") from error
    _check_row_texts(documents, text_column, f"{source} ({split})")
    return _as_documents(documents, text_column)


# --------------------------------------------------------------------------- splitting


def split_documents(documents: Dataset, validation_fraction: float, seed: int) -> DatasetDict:
    """Hold out a seeded random ``validation_fraction`` of the documents.

    With ``validation_fraction == 0`` the validation split is empty. Any positive
    fraction holds out at least one document.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    if validation_fraction == 0.0:
        return DatasetDict(train=documents, validation=documents.select([]))
    if len(documents) < 2:
        raise DataError(f"cannot hold out validation documents from a corpus of {len(documents)} document(s)")
    n_validation = max(1, math.ceil(validation_fraction * len(documents)))
    if n_validation >= len(documents):
        n_validation = len(documents) - 1
    split = documents.train_test_split(test_size=n_validation, seed=seed, shuffle=True)
    return DatasetDict(train=split["train"], validation=split["test"])


# --------------------------------------------------------------------------- tokenizing


def _map_each_split(
    data: Dataset | DatasetDict, function, features: Features, **map_kwargs
) -> Dataset | DatasetDict:
    """``Dataset.map(batched=True)`` replacing all columns with ``features``, split by split.

    An empty split (e.g. validation_fraction=0) still gets the output columns;
    ``map`` would return it with none, because the function never runs.
    """
    if isinstance(data, DatasetDict):
        return DatasetDict(
            {name: _map_each_split(split, function, features, **map_kwargs) for name, split in data.items()}
        )
    if len(data) == 0:
        return Dataset.from_dict({name: [] for name in features}, features=features)
    return data.map(function, batched=True, remove_columns=data.column_names, features=features, **map_kwargs)



def _tokenize_batch(batch: dict, tokenizer: PreTrainedTokenizerBase) -> dict:
    # Special tokens are added per block by pack_blocks, not per document.
    encoded = tokenizer(
        batch["text"],
        add_special_tokens=False,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,  # documents are longer than model_max_length by design
    )
    word_starts = []
    for i in range(len(batch["text"])):
        word_ids = np.asarray(encoded.word_ids(i), dtype=np.int64)
        starts = np.ones(len(word_ids), dtype=np.int8)
        starts[1:] = word_ids[1:] != word_ids[:-1]
        word_starts.append(starts)
    return {"input_ids": encoded["input_ids"], "word_start": word_starts}


def tokenize_documents(
    documents: Dataset | DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    num_proc: int | None = None,
) -> Dataset | DatasetDict:
    """Tokenize the ``text`` column into ``input_ids`` and ``word_start`` (no special tokens).

    Kept separate from packing so that changing ``block_size`` re-uses the
    cached tokenization, which is the expensive step.
    """
    if not tokenizer.is_fast:
        raise TypeError("tokenize_documents needs a fast tokenizer: word_start comes from its word_ids()")
    if num_proc is not None and num_proc > 1:
        # datasets forks worker processes; the Rust tokenizer's own thread pool does
        # not survive a fork and each worker already has a core.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return _map_each_split(
        documents,
        _tokenize_batch,
        TOKENIZED_FEATURES,
        fn_kwargs={"tokenizer": tokenizer},
        num_proc=num_proc,
        desc="Tokenizing documents",
    )


# --------------------------------------------------------------------------- packing


def _pack_batch(
    batch: dict,
    indices: list[int],
    *,
    block_size: int,
    min_tail_tokens: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
) -> dict:
    content = block_size - 2
    blocks: dict[str, list] = {name: [] for name in BLOCK_FEATURES}
    for document_id, ids, starts in zip(indices, batch["input_ids"], batch["word_start"]):
        for begin in range(0, len(ids), content):
            piece = ids[begin : begin + content]
            n = len(piece)
            if n < content and n < min_tail_tokens:
                continue
            piece_starts = list(starts[begin : begin + content])
            # The first token of a block is a word start for masking purposes even
            # if its word began in the previous block: that half-word is all this block sees.
            piece_starts[0] = 1
            padding = content - n
            blocks["input_ids"].append([cls_id, *piece, sep_id] + [pad_id] * padding)
            blocks["attention_mask"].append([1] * (n + 2) + [0] * padding)
            blocks["special_tokens_mask"].append([1] + [0] * n + [1] * (padding + 1))
            blocks["word_start"].append([0, *piece_starts, 0] + [0] * padding)
            blocks["document_id"].append(document_id)
    return blocks


def pack_blocks(
    tokenized: Dataset | DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    block_size: int,
    min_tail_tokens: int | None = None,
    num_proc: int | None = None,
) -> Dataset | DatasetDict:
    """Cut tokenized documents into ``[CLS] ... [SEP]`` blocks of exactly ``block_size``.

    ``document_id`` is the row index of the source document in its split. See the
    module docstring for the tail rule; ``min_tail_tokens`` defaults to
    ``block_size // 4`` and counts content tokens (without [CLS]/[SEP]).
    """
    if block_size < 3:
        raise ValueError(f"block_size must be >= 3 ([CLS], one token, [SEP]), got {block_size}")
    if min_tail_tokens is None:
        min_tail_tokens = block_size // 4
    min_tail_tokens = max(1, min_tail_tokens)
    for name in ("cls_token_id", "sep_token_id", "pad_token_id"):
        if getattr(tokenizer, name) is None:
            raise ValueError(f"tokenizer has no {name}; BERT blocks need [CLS], [SEP] and [PAD]")
    return _map_each_split(
        tokenized,
        _pack_batch,
        BLOCK_FEATURES,
        with_indices=True,
        fn_kwargs={
            "block_size": block_size,
            "min_tail_tokens": min_tail_tokens,
            "cls_id": tokenizer.cls_token_id,
            "sep_id": tokenizer.sep_token_id,
            "pad_id": tokenizer.pad_token_id,
        },
        num_proc=num_proc,
        desc=f"Packing {block_size}-token blocks",
    )


def build_pretraining_dataset(
    source: str | Path,
    tokenizer: PreTrainedTokenizerBase | str | Path,
    block_size: int,
    validation_fraction: float,
    seed: int,
    num_proc: int | None,
    cache_dir: str | Path | None = None,
    *,
    text_column: str = "text",
    min_tail_tokens: int | None = None,
) -> DatasetDict:
    """Load, split by document, tokenize and pack a corpus into ``train``/``validation`` blocks.

    ``tokenizer`` may be a loaded tokenizer or a name/directory for
    :func:`leanbert.tokenizer.load_tokenizer`. Raises :class:`DataError` if the
    training split ends up with no block (every document shorter than
    ``min_tail_tokens``).
    """
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        tokenizer = load_tokenizer(tokenizer)
    documents = load_corpus(source, text_column=text_column, cache_dir=cache_dir)
    splits = split_documents(documents, validation_fraction, seed)
    tokenized = tokenize_documents(splits, tokenizer, num_proc=num_proc)
    blocks = pack_blocks(tokenized, tokenizer, block_size, min_tail_tokens=min_tail_tokens, num_proc=num_proc)
    if len(blocks["train"]) == 0:
        raise DataError(
            f"{source}: no training blocks; every document is shorter than min_tail_tokens "
            f"({min_tail_tokens if min_tail_tokens is not None else block_size // 4} tokens)"
        )
    return blocks
