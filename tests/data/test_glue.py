"""Tests for leanbert.data.glue: registry, JSONL/TSV loading, validation errors, tokenization."""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path

import pytest

from leanbert.data.glue import GLUE_TASKS, available_tasks, get_task, glue_task_folder, load_glue_task, tokenize_glue
from leanbert.data.records import DataError
from leanbert.tokenizer import load_tokenizer

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHARED_GLUE = SHARED_DATA / "glue"
BERT_UNCASED = SHARED_DATA / "tokenizers" / "bert-base-uncased"

needs_shared_glue = pytest.mark.skipif(not SHARED_GLUE.is_dir(), reason=f"{SHARED_GLUE} absent")

# (train rows, validation rows) from shared/data/README.md; None = split absent.
SHARED_COUNTS = {
    "sst2": (67349, 872),
    "mrpc": (3668, 408),
    "cola": (8551, 1043),
    "stsb": (5749, 1500),
    "wnli": (635, 71),
    "qnli": (None, 5463),
}


def write_jsonl(path: Path, records: list[dict | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [record if isinstance(record, str) else json.dumps(record) for record in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_tsv(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")
    return path


def sst2_records(n: int) -> list[dict]:
    return [{"sentence": f"sentence number {i} ", "label": i % 2, "idx": i} for i in range(n)]


# --------------------------------------------------------------------------- registry


def test_registry_covers_glue_in_hf_schema():
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    expected_fields = {
        "cola": ("sentence",),
        "sst2": ("sentence",),
        "mrpc": ("sentence1", "sentence2"),
        "qqp": ("question1", "question2"),
        "stsb": ("sentence1", "sentence2"),
        "mnli": ("premise", "hypothesis"),
        "qnli": ("question", "sentence"),
        "rte": ("sentence1", "sentence2"),
        "wnli": ("sentence1", "sentence2"),
    }
    for name, fields in expected_fields.items():
        assert GLUE_TASKS[name].text_fields == fields
    assert GLUE_TASKS["stsb"].is_regression and GLUE_TASKS["stsb"].num_labels == 1
    assert GLUE_TASKS["mnli"].num_labels == 3
    assert GLUE_TASKS["mnli"].validation_splits == ("validation_matched", "validation_mismatched")
    assert GLUE_TASKS["qnli"].label_names == ("entailment", "not_entailment")
    assert GLUE_TASKS["cola"].metric_names == ("matthews_correlation",)
    assert GLUE_TASKS["mrpc"].metric_names == ("accuracy", "f1")


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(DataError, match="unknown GLUE task 'sst-3'.*cola, sst2, mrpc"):
        get_task("sst-3")
    assert get_task("SST2").name == "sst2"


# --------------------------------------------------------------------------- shared data, happy paths


@needs_shared_glue
@pytest.mark.parametrize("task", sorted(SHARED_COUNTS))
def test_shared_jsonl_loads_with_published_counts(task):
    loaded = load_glue_task(task, SHARED_GLUE)
    train_rows, validation_rows = SHARED_COUNTS[task]
    assert ("train" in loaded) == (train_rows is not None)
    if train_rows is not None:
        assert len(loaded["train"]) == train_rows
    assert len(loaded["validation"]) == validation_rows
    glue_task = get_task(task)
    assert loaded["validation"].column_names == [*glue_task.text_fields, "label", "idx"]


@needs_shared_glue
@pytest.mark.parametrize("task", sorted(SHARED_COUNTS))
def test_original_tsv_parses_to_the_same_rows_as_the_jsonl(task):
    """Parity with the reference conversion: the TSV parser must reproduce the HF-schema JSONL exactly."""
    from_jsonl = load_glue_task(task, SHARED_GLUE, file_format="jsonl")
    from_tsv = load_glue_task(task, SHARED_GLUE, file_format="tsv")
    assert set(from_tsv) == set(from_jsonl)
    for split in from_jsonl:
        assert from_tsv[split].features == from_jsonl[split].features
        assert from_tsv[split].to_dict() == from_jsonl[split].to_dict()


@needs_shared_glue
def test_mrpc_rebuilt_from_msr_paraphrase_keeps_hf_idx():
    validation = load_glue_task("mrpc", SHARED_GLUE, file_format="tsv")["validation"]
    assert validation[0]["idx"] == 9
    assert validation[0]["sentence1"].startswith("He said the foodservice pie business doesn 't fit")


@needs_shared_glue
def test_available_tasks_reports_skips_with_reasons():
    present, skipped = available_tasks(SHARED_GLUE)
    assert present == ["cola", "sst2", "mrpc", "stsb", "wnli"]
    assert set(skipped) == {"qqp", "mnli", "qnli", "rte"}
    assert "missing split(s) train" in skipped["qnli"]
    assert "no rte data" in skipped["rte"] and "train.tsv/dev.tsv" in skipped["rte"]
    assert "validation_matched.jsonl" in skipped["mnli"]

    present, skipped = available_tasks(SHARED_GLUE, ["qnli", "sst2"], require_train=False)
    assert (present, skipped) == (["qnli", "sst2"], {})
    with pytest.raises(DataError, match="unknown GLUE task"):
        available_tasks(SHARED_GLUE, ["sst2", "nope"])


def test_available_tasks_for_the_hub_counts_everything_present():
    present, skipped = available_tasks(None, ["rte", "cola"])
    assert (present, skipped) == (["rte", "cola"], {})


# --------------------------------------------------------------------------- bad JSONL input


def test_malformed_json_line_names_file_and_line(tmp_path):
    records: list[dict | str] = sst2_records(20)
    records[16] = '{"sentence": "broken", "label": 1'
    path = write_jsonl(tmp_path / "sst2" / "train.jsonl", records)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:17: not valid JSON: "):
        load_glue_task("sst2", tmp_path)


def test_missing_field_names_file_line_field_and_task(tmp_path):
    records = [{"sentence1": "a b", "sentence2": "c d", "label": 1, "idx": i} for i in range(5)]
    del records[2]["sentence2"]
    path = write_jsonl(tmp_path / "mrpc" / "validation.jsonl", records)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: missing field 'sentence2' for task mrpc$"):
        load_glue_task("mrpc", tmp_path)


def test_empty_text_names_file_line_and_field(tmp_path):
    records = sst2_records(8)
    records[4]["sentence"] = "   "
    path = write_jsonl(tmp_path / "sst2" / "train.jsonl", records)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:5: empty 'sentence'$"):
        load_glue_task("sst2", tmp_path)


def test_label_out_of_range_names_the_range(tmp_path):
    records = sst2_records(10)
    records[8]["label"] = 7
    path = write_jsonl(tmp_path / "sst2" / "validation.jsonl", records)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:9: label 7 out of range for task sst2 \(0\.\.1\)$"):
        load_glue_task("sst2", tmp_path)


@pytest.mark.parametrize(
    ("task", "record", "message"),
    [
        ("stsb", {"sentence1": "a", "sentence2": "b", "label": 5.5}, r"label 5\.5 out of range for task stsb \(0\.0\.\.5\.0\)"),
        ("stsb", {"sentence1": "a", "sentence2": "b", "label": "high"}, "label 'high' is not a number"),
        ("mnli", {"premise": "a", "hypothesis": "b", "label": -1}, r"label -1 out of range for task mnli \(0\.\.2\)"),
        ("cola", {"sentence": "a", "label": "1"}, r"label '1' is not an integer class id for task cola \(0\.\.1: unacceptable, acceptable\)"),
        ("cola", {"sentence": "a", "label": True}, "label True is not an integer class id"),
        ("cola", {"sentence": "a"}, "missing field 'label' for task cola"),
        ("cola", {"sentence": 3, "label": 0}, "'sentence' must be a string, got int"),
        ("cola", {"sentence": "a", "label": 0, "idx": "x"}, "'idx' must be an integer"),
    ],
)
def test_other_bad_records(tmp_path, task, record, message):
    split = get_task(task).validation_splits[0]
    path = write_jsonl(tmp_path / task / f"{split}.jsonl", [record])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:1: {message}"):
        load_glue_task(task, tmp_path)


def test_json_line_that_is_not_an_object(tmp_path):
    path = write_jsonl(tmp_path / "sst2" / "train.jsonl", ['["a list"]'])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:1: expected a JSON object, got list"):
        load_glue_task("sst2", tmp_path)


def test_file_without_examples_is_an_error(tmp_path):
    path = tmp_path / "sst2" / "train.jsonl"
    path.parent.mkdir()
    path.write_text("\n\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: no examples"):
        load_glue_task("sst2", tmp_path)


def test_missing_task_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"no rte data in .*rte/, RTE/"):
        load_glue_task("rte", tmp_path)


def test_good_jsonl_without_idx_numbers_rows(tmp_path):
    records = [{"sentence": "fine", "label": 1}, {"sentence": "bad", "label": 0}]
    write_jsonl(tmp_path / "sst2" / "train.jsonl", records)
    write_jsonl(tmp_path / "sst2" / "validation.jsonl", records)
    loaded = load_glue_task("sst2", tmp_path)
    assert loaded["train"]["idx"] == [0, 1]
    assert loaded["train"].features["label"].names == ["negative", "positive"]


# --------------------------------------------------------------------------- TSV layouts absent from shared data


def test_bad_byte_in_a_tsv_names_its_own_line(tmp_path):
    header = ["index", "sentence1", "sentence2", "label"]
    rows = [header] + [[str(i), f"premise {i} " + "x" * 40, "hypothesis", "entailment"] for i in range(899)]
    write_tsv(tmp_path / "RTE" / "dev.tsv", rows)
    train = tmp_path / "RTE" / "train.tsv"
    write_tsv(train, rows)
    lines = train.read_bytes().splitlines(keepends=True)
    lines[899] = lines[899].replace(b"hypothesis", b"hyp\xffothesis")  # line 900, past the first 8 KB
    train.write_bytes(codecs.BOM_UTF8 + b"".join(lines))
    with pytest.raises(DataError, match=rf"^{re.escape(str(train))}:900: not valid UTF-8"):
        load_glue_task("rte", tmp_path)


def test_rte_tsv_in_glue_folder_maps_label_names(tmp_path):
    header = ["index", "sentence1", "sentence2", "label"]
    write_tsv(tmp_path / "RTE" / "train.tsv", [header, ["0", "A cat sat.", "A cat exists.", "entailment"]])
    write_tsv(tmp_path / "RTE" / "dev.tsv", [header, ["0", "It rained.", "It was dry.", "not_entailment"]])
    loaded = load_glue_task("rte", tmp_path)
    assert loaded["train"][0] == {"sentence1": "A cat sat.", "sentence2": "A cat exists.", "label": 0, "idx": 0}
    assert glue_task_folder("rte", tmp_path) == tmp_path / "RTE"  # what results.json records as the data
    assert loaded["validation"]["label"] == [1]


def test_mnli_tsv_uses_gold_label_and_both_dev_sets(tmp_path):
    header = ["index", "promptID", "pairID", "genre", "sentence1", "sentence2", "label1", "gold_label"]
    folder = tmp_path / "mnli" / "original"
    write_tsv(folder / "train.tsv", [header, ["0", "1", "1e", "fiction", "P one", "H one", "neutral", "neutral"]])
    write_tsv(folder / "dev_matched.tsv", [header, ["0", "2", "2e", "fiction", "P two", "H two", "x", "contradiction"]])
    write_tsv(folder / "dev_mismatched.tsv", [header, ["0", "3", "3e", "travel", "P 3", "H 3", "x", "entailment"]])
    loaded = load_glue_task("mnli", tmp_path)
    assert set(loaded) == {"train", "validation_matched", "validation_mismatched"}
    assert loaded["train"][0] == {"premise": "P one", "hypothesis": "H one", "label": 1, "idx": 0}
    assert loaded["validation_matched"]["label"] == [2]
    assert available_tasks(tmp_path, ["mnli"]) == (["mnli"], {})
    # one dev set alone: skipped with the reason, as training would stop on it later
    (folder / "dev_mismatched.tsv").unlink()
    present, skipped = available_tasks(tmp_path, ["mnli"])
    assert present == [] and "missing split(s) validation_mismatched" in skipped["mnli"]


def test_qqp_tsv_and_quotes_are_kept(tmp_path):
    header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    rows = [header, ["7", "1", "2", 'Is "this" odd?', "Is it odd?", "1"]]
    write_tsv(tmp_path / "QQP" / "train.tsv", rows)
    write_tsv(tmp_path / "QQP" / "dev.tsv", rows)
    row = load_glue_task("qqp", tmp_path)["train"][0]
    assert row["question1"] == 'Is "this" odd?' and row["label"] == 1


def test_mrpc_train_dev_tsv_fallback(tmp_path):
    header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    write_tsv(tmp_path / "MRPC" / "train.tsv", [header, ["1", "10", "11", "Same thing .", "The same thing ."]])
    write_tsv(tmp_path / "MRPC" / "dev.tsv", [header, ["0", "12", "13", "One .", "Other ."]])
    loaded = load_glue_task("mrpc", tmp_path)
    assert loaded["validation"][0] == {"sentence1": "One .", "sentence2": "Other .", "label": 0, "idx": 0}


def test_tsv_errors_name_file_and_line(tmp_path):
    header = ["index", "sentence1", "sentence2", "label"]
    good = ["0", "a", "b", "1"]
    path = write_tsv(tmp_path / "wnli" / "train.tsv", [header, good, ["1", "a", "b"]])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: expected 4 tab-separated columns, got 3"):
        load_glue_task("wnli", tmp_path)
    path = write_tsv(tmp_path / "wnli" / "train.tsv", [header, good, ["1", "a\tb", "c", "0"]])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: expected 4 tab-separated columns, got 5"):
        load_glue_task("wnli", tmp_path)
    path = write_tsv(tmp_path / "wnli" / "train.tsv", [header, good, good, ["2", "", "b", "1"]])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:4: empty 'sentence1'"):
        load_glue_task("wnli", tmp_path)
    path = write_tsv(tmp_path / "wnli" / "train.tsv", [["index", "text", "label"], good])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:1: header lacks column\(s\) 'sentence1', 'sentence2'"):
        load_glue_task("wnli", tmp_path)
    path = write_tsv(tmp_path / "cola" / "train.tsv", [["gj04", "3", "", "Too high a label."]])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:1: label 3 out of range for task cola"):
        load_glue_task("cola", tmp_path)


# --------------------------------------------------------------------------- tokenization


@needs_shared_glue
def test_tokenize_glue_pairs_truncates_and_keeps_labels():
    if not BERT_UNCASED.is_dir():
        pytest.skip(f"{BERT_UNCASED} absent")
    tokenizer = load_tokenizer(BERT_UNCASED)
    mrpc = load_glue_task("mrpc", SHARED_GLUE)
    encoded = tokenize_glue(mrpc, tokenizer, "mrpc", max_length=32)
    validation = encoded["validation"]
    assert "sentence1" not in validation.column_names and "label" in validation.column_names
    assert validation["label"] == mrpc["validation"]["label"]
    lengths = [len(ids) for ids in validation["input_ids"]]
    assert max(lengths) == 32 and min(lengths) < 32  # truncated, not padded
    first = validation[0]
    assert first["input_ids"][0] == tokenizer.cls_token_id
    assert first["input_ids"].count(tokenizer.sep_token_id) == 2
    assert set(first["token_type_ids"]) == {0, 1}
    with pytest.raises(DataError, match="lacks text field"):
        tokenize_glue(mrpc, tokenizer, "sst2")
