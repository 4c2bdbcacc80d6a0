"""Tests for leanbert.data.corpus: loading, document split, tokenization, block packing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset

from leanbert.data.corpus import (
    build_pretraining_dataset,
    load_corpus,
    pack_blocks,
    split_documents,
    tokenize_documents,
)
from leanbert.data.records import DataError


BLOCK_SIZE = 64


@pytest.fixture(scope="module")
def paragraphs(gutenberg_paragraphs) -> list[str]:
    return gutenberg_paragraphs(240)


@pytest.fixture(scope="module")
def documents(paragraphs) -> list[list[str]]:
    """Documents of 1..6 paragraphs, so lengths range from a sentence to several blocks."""
    grouped, start, size = [], 0, 1
    while start < len(paragraphs):
        grouped.append(paragraphs[start : start + size])
        start += size
        size = size % 6 + 1
    return grouped


def write_corpus(path: Path, documents: list[list[str]], separator: str = "\n\n") -> Path:
    path.write_text(separator.join("\n".join(doc) for doc in documents) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory, documents) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "books.txt", documents)


# --------------------------------------------------------------------------- loading


def test_text_file_gives_one_row_per_document(corpus_file, documents, tmp_path):
    loaded = load_corpus(corpus_file, cache_dir=tmp_path)
    assert loaded.column_names == ["text"]
    assert loaded["text"] == ["\n".join(doc) for doc in documents]


def test_runs_of_blank_lines_separate_once(documents, tmp_path):
    path = write_corpus(tmp_path / "gappy.txt", documents[:5], separator="\n\n\n  \n")
    assert len(load_corpus(path, cache_dir=tmp_path / "cache")) == 5


def test_folder_reads_every_txt_file_in_name_order(documents, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    write_corpus(folder / "b.txt", documents[3:5])
    write_corpus(folder / "a.txt", documents[:3])
    (folder / "notes.md").write_text("ignored")
    loaded = load_corpus(folder, cache_dir=tmp_path / "cache")
    assert loaded["text"] == ["\n".join(doc) for doc in documents[:5]]


def test_changed_file_is_reloaded_not_served_from_cache(tmp_path):
    path = tmp_path / "changing.txt"
    path.write_text("first version of the text\n")
    assert load_corpus(path, cache_dir=tmp_path / "cache")["text"] == ["first version of the text"]
    path.write_text("second version, a different length\n")
    assert load_corpus(path, cache_dir=tmp_path / "cache")["text"] == ["second version, a different length"]


BAD_FILES = [  # (file name, contents, the DataError it gives)
    ("empty.txt", b"\n\n   \n", r"empty\.txt: empty corpus file"),
    ("latin1.txt", "fine line\n\nna\xefve line\n".encode("latin-1"), r"latin1\.txt:3: not valid UTF-8"),
    ("docs.jsonl", b'{"text": "one"}\n{"text": "two"}\n{"text": "   "}\n', r"docs\.jsonl:3: empty 'text'"),
    ("docs.jsonl", b'{"text": "one"}\n{"text": "two"\n', r"docs\.jsonl:2: not valid JSON"),
    ("docs.csv", b'id,text\n0,"first document"\n1,a,b,c\n2,"third document"\n',
     r"docs\.csv: not readable as CSV: .*Expected 2 fields in line 3, saw 4$"),
    # JSON Lines under a .json name, as the datasets json reader allows
    ("docs.json", b'{"text": "one"}\n{"text": broken\n{"text": "three"}\n', r"docs\.json:2: not valid JSON"),
    ("array.json", b'[{"text": "one"}, {"text": ]', r"array\.json: not readable as JSON: "),
    ("numbers.json", b'[{"text": "a b"}, {"text": 5}]', r"numbers\.json: row 2: 'text' must be a string"),
    ("numbers.csv", b"text\n1\n2\n", r"numbers\.csv: row 1: 'text' must be a string"),
]


@pytest.mark.parametrize("name, contents, message", BAD_FILES, ids=[f"{i}-{name}" for i, (name, _, _) in enumerate(BAD_FILES)])
def test_bad_corpus_file_is_an_error_naming_it(tmp_path, name, contents, message):
    path = tmp_path / name
    path.write_bytes(contents)
    with pytest.raises(DataError, match=message):
        load_corpus(path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("lead", ["", "\n  "])  # whitespace before the array is still an array
def test_json_array_corpus(tmp_path, lead):
    array = tmp_path / "array.json"
    array.write_text(lead + '[{"text": "one"}, {"text": "two"}]')
    assert load_corpus(array, cache_dir=tmp_path / "cache")["text"] == ["one", "two"]


def test_folder_without_text_files_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no .txt corpus files"):
        load_corpus(tmp_path, cache_dir=tmp_path / "cache")


def test_missing_local_path_is_an_error_not_a_hub_lookup(tmp_path):
    with pytest.raises(DataError, match="no such corpus file"):
        load_corpus(str(tmp_path / "missing.txt"))


def test_a_bare_name_that_is_neither_local_nor_on_the_hub_names_both(monkeypatch, tmp_path):
    import leanbert.data.corpus as corpus

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'wiki' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(corpus, "load_dataset", offline)  # the hub is never asked in tests
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=rf"wiki: no such corpus file or folder under {tmp_path}.*Couldn't reach"):
        load_corpus("wiki")


def test_jsonl_with_custom_text_column(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps({"body": f"document number {i}", "id": i}) for i in range(4)) + "\n")
    loaded = load_corpus(path, text_column="body", cache_dir=tmp_path / "cache")
    assert loaded.column_names == ["text"]
    assert loaded["text"] == [f"document number {i}" for i in range(4)]


def test_csv_missing_column_and_empty_row(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_text("body\nalpha\n\"\"\ngamma\n")
    with pytest.raises(DataError, match="no column 'text'"):
        load_corpus(path, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match=r"docs\.csv: row 2: empty 'body'"):
        load_corpus(path, text_column="body", cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------- splitting


def test_split_is_by_document_seeded_and_disjoint():
    docs = Dataset.from_dict({"text": [f"document {i}" for i in range(50)]})
    split = split_documents(docs, validation_fraction=0.2, seed=3)
    assert (len(split["train"]), len(split["validation"])) == (40, 10)
    assert not set(split["train"]["text"]) & set(split["validation"]["text"])
    assert set(split["train"]["text"]) | set(split["validation"]["text"]) == set(docs["text"])
    assert split_documents(docs, 0.2, seed=3)["validation"]["text"] == split["validation"]["text"]
    assert split_documents(docs, 0.2, seed=4)["validation"]["text"] != split["validation"]["text"]


def test_split_fraction_edges():
    docs = Dataset.from_dict({"text": ["a", "b", "c"]})
    assert len(split_documents(docs, 0.0, seed=0)["validation"]) == 0
    assert len(split_documents(docs, 0.01, seed=0)["validation"]) == 1
    with pytest.raises(ValueError, match="validation_fraction"):
        split_documents(docs, 1.0, seed=0)
    with pytest.raises(DataError, match="1 document"):
        split_documents(docs.select([0]), 0.5, seed=0)


# --------------------------------------------------------------------------- tokenizing and packing


def test_word_start_marks_wordpiece_word_heads(tokenizer):
    docs = Dataset.from_dict({"text": ["Unbelievably, the Elliots' hall stood.\nA second paragraph here."]})
    row = tokenize_documents(docs, tokenizer)[0]
    tokens = tokenizer.convert_ids_to_tokens(row["input_ids"])
    assert tokenizer.cls_token_id not in row["input_ids"]  # special tokens come with the blocks
    assert row["word_start"] == [0 if token.startswith("##") else 1 for token in tokens]
    assert 0 in row["word_start"]


def test_blocks_respect_documents_and_keep_their_tokens(tokenizer):
    texts = ["word " * 10, "other " * 150, "third " * 70, "tiny"]
    tokenized = tokenize_documents(Dataset.from_dict({"text": texts}), tokenizer)
    blocks = pack_blocks(tokenized, tokenizer, block_size=BLOCK_SIZE, min_tail_tokens=8)
    content = BLOCK_SIZE - 2
    # doc 0: 10 tokens -> one padded block; doc 1: 150 -> 62 + 62 + 26; doc 2: 70 -> 62 + (8: kept);
    # doc 3: 1 token < 8 -> dropped.
    assert blocks["document_id"] == [0, 1, 1, 1, 2, 2]
    real_lengths = [sum(mask) - 2 for mask in blocks["attention_mask"]]
    assert real_lengths == [10, content, content, 26, content, 8]
    for row in blocks:
        assert len(row["input_ids"]) == BLOCK_SIZE
        n = sum(row["attention_mask"])
        assert row["attention_mask"] == [1] * n + [0] * (BLOCK_SIZE - n)
        assert row["input_ids"][0] == tokenizer.cls_token_id
        assert row["input_ids"][n - 1] == tokenizer.sep_token_id
        assert row["input_ids"][n:] == [tokenizer.pad_token_id] * (BLOCK_SIZE - n)
        assert row["special_tokens_mask"] == [1] + [0] * (n - 2) + [1] * (BLOCK_SIZE - n + 1)
        assert row["word_start"][0] == 0 and not any(row["word_start"][n - 1 :])
    assert pack_blocks(tokenized, tokenizer, block_size=BLOCK_SIZE, min_tail_tokens=9)["document_id"] == [
        0, 1, 1, 1, 2,
    ]


def test_block_split_mid_word_starts_a_word(tokenizer):
    # "unbelievably" is several pieces; with 3 content tokens per block a piece
    # continuing a word opens the second block.
    tokenized = tokenize_documents(Dataset.from_dict({"text": ["unbelievably unbelievably"]}), tokenizer)
    ids = tokenized[0]["input_ids"]
    assert len(ids) > 3 and tokenizer.convert_ids_to_tokens(ids[3]).startswith("##")
    blocks = pack_blocks(tokenized, tokenizer, block_size=5, min_tail_tokens=1)
    assert blocks[1]["word_start"][1] == 1


def test_build_pretraining_dataset_multiprocess(corpus_file, documents, tokenizer, tmp_path):
    cache_dir = tmp_path / "cache"
    built = build_pretraining_dataset(
        corpus_file, tokenizer, BLOCK_SIZE, validation_fraction=0.2, seed=7, num_proc=2, cache_dir=cache_dir
    )
    assert set(built) == {"train", "validation"}
    assert len(built["train"]) > len(built["validation"]) > 0

    # Re-derive each split's documents and check the blocks of every document are
    # exactly its tokens, in order, cut at block_size - 2, with only a short tail dropped.
    split = split_documents(load_corpus(corpus_file, cache_dir=cache_dir), 0.2, seed=7)
    content, min_tail = BLOCK_SIZE - 2, BLOCK_SIZE // 4
    for name in ("train", "validation"):
        by_document: dict[int, list[int]] = {}
        for row in built[name]:
            n = sum(row["attention_mask"])
            by_document.setdefault(row["document_id"], []).extend(row["input_ids"][1 : n - 1])
        for document_id, text in enumerate(split[name]["text"]):
            ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
            tail = len(ids) % content
            expected = ids if tail == 0 or tail >= min_tail else ids[: len(ids) - tail]
            assert by_document.get(document_id, []) == expected

    again = build_pretraining_dataset(
        corpus_file, tokenizer, BLOCK_SIZE, validation_fraction=0.2, seed=7, num_proc=2, cache_dir=cache_dir
    )
    # Same inputs -> the fingerprint cache serves the same arrow files.
    assert again["train"].cache_files == built["train"].cache_files
    assert again["train"]["input_ids"] == built["train"]["input_ids"]


def test_build_fails_when_every_document_is_too_short(tokenizer, tmp_path):
    path = write_corpus(tmp_path / "short.txt", [["one two"], ["three four"], ["five"]])
    with pytest.raises(DataError, match="no training blocks"):
        build_pretraining_dataset(path, tokenizer, 128, 0.0, seed=0, num_proc=1, cache_dir=tmp_path / "cache")
