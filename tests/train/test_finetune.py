"""One-task fine-tuning: real (tiny) training on slices of the shared GLUE data, and every check before training."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr

from leanbert.data.records import DataError
from leanbert.train.finetune import finetune, load_model_source, resolve_glue_dir
from leanbert.train.glue_protocols import PROTOCOLS, protocol_settings



def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sst2_slice_trains_scores_and_writes_results(tiny_model_dir, glue_dir, tmp_path):
    out = tmp_path / "sst2"
    result = finetune(tiny_model_dir, "sst2", glue_dir, out, max_train_samples=64, max_eval_samples=200,
                      save_predictions=True)
    assert set(result["metrics"]) == {"accuracy"}
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0
    assert result["main_score"] == result["metrics"]["accuracy"]
    assert result["train"]["examples"] == 64
    assert result["train"]["steps"] == 4 * 2  # run_glue: 4 epochs of 64 rows in batches of 32
    assert math.isfinite(result["train"]["loss"])
    assert result["evaluation"]["validation"]["examples"] == 200
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["metrics"] == result["metrics"] and on_disk["settings"]["learning_rate"] == 1e-4
    rows = _read_jsonl(out / "predictions_validation.jsonl")
    assert len(rows) == 200 and [row["idx"] for row in rows] == list(range(200))
    assert all(row["prediction"] in (0, 1) and row["prediction_name"] in ("negative", "positive") for row in rows)
    accuracy = sum(row["prediction"] == row["label"] for row in rows) / len(rows)
    assert accuracy == pytest.approx(result["metrics"]["accuracy"])
    assert sorted(p.name for p in out.iterdir()) == ["predictions_validation.jsonl", "results.json"]


def test_stsb_is_regression_with_correlations(tiny_model_dir, glue_dir, tmp_path):
    out = tmp_path / "stsb"
    result = finetune(tiny_model_dir, "stsb", glue_dir, out, protocol="glue_sane", seed=7, max_train_samples=64,
                      epochs=2, save_predictions=True, predictions_format="tsv")
    assert set(result["metrics"]) == {"pearson", "spearmanr"}
    assert all(-1.0 <= value <= 1.0 for value in result["metrics"].values())
    assert result["seed"] == 7 and result["settings"]["warmup_ratio"] == 0.1 and result["settings"]["epochs"] == 2
    lines = (out / "predictions_validation.tsv").read_text().splitlines()
    assert lines[0] == "idx\tlabel\tprediction" and len(lines) == 1 + 1500
    _, label, prediction = lines[1].split("\t")
    assert 0.0 <= float(label) <= 5.0 and math.isfinite(float(prediction))
    # each prediction sits beside its own row: the file's correlation is the reported one
    # (length-grouped evaluation batches used to reorder the predictions but not the rows)
    columns = np.array([[float(v) for v in line.split("\t")] for line in lines[1:]])
    assert columns[:, 0].tolist() == list(range(1500))
    assert pearsonr(columns[:, 1], columns[:, 2])[0] == pytest.approx(result["metrics"]["pearson"], abs=1e-6)


def test_same_seed_gives_the_same_scores(tiny_model_dir, glue_dir, tmp_path):
    runs = [finetune(tiny_model_dir, "stsb", glue_dir, tmp_path / f"run{i}", seed=3, max_train_samples=32,
                     max_eval_samples=64, epochs=1)["metrics"] for i in range(2)]
    assert runs[0] == runs[1]


def test_protocols_are_the_documented_settings():
    run_glue, sane = PROTOCOLS["run_glue"], PROTOCOLS["glue_sane"]
    assert (run_glue.max_seq_length, run_glue.batch_size, run_glue.learning_rate, run_glue.epochs) == (128, 32, 1e-4, 4)
    assert sane.epochs <= 5 and sane.seeds == 5
    with pytest.raises(ValueError, match="at most 5"):
        protocol_settings("glue_sane", epochs=6)
    with pytest.raises(ValueError, match="valid protocols: run_glue, glue_sane"):
        protocol_settings("superglue")
    with pytest.raises(ValueError, match="unknown setting"):
        protocol_settings("run_glue", learning_rte=1e-3)
    with pytest.raises(ValueError, match="max_train_samples"):
        protocol_settings("run_glue", max_train_samples=0)
    assert protocol_settings("run_glue", epochs=None).epochs == 4  # None means "not overridden"


def test_tokenizer_bigger_than_the_vocab_fails_before_training(tmp_path, glue_dir, no_training, save_tiny_model):
    small = tmp_path / "small_vocab"
    save_tiny_model(small, vocab_size=1000)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="30522 tokens but the model's vocab_size is 1000"):
        finetune(small, "sst2", glue_dir, out)
    assert not out.exists()


def test_sequence_longer_than_the_position_table_fails(tiny_model_dir, glue_dir, tmp_path, no_training):
    with pytest.raises(ValueError, match="max_seq_length 1024 exceeds the model's max_position_embeddings 512"):
        finetune(tiny_model_dir, "sst2", glue_dir, tmp_path / "out", max_seq_length=1024)
    assert not (tmp_path / "out").exists()


def test_model_folder_problems_name_the_folder(tiny_model_dir, tmp_path):
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(tiny_model_dir / "config.json", no_weights)
    with pytest.raises(ValueError, match="no weights found"):
        load_model_source(no_weights)
    no_tokenizer = tmp_path / "no_tokenizer"
    shutil.copytree(tiny_model_dir, no_tokenizer, ignore=shutil.ignore_patterns("tokenizer*"))
    with pytest.raises(FileNotFoundError, match="pass --tokenizer"):
        load_model_source(no_tokenizer)
    source = load_model_source(no_tokenizer, tokenizer=tiny_model_dir)
    assert len(source.tokenizer) == source.config.vocab_size == 30522


def test_task_without_train_split_fails_for_finetune(tiny_model_dir, glue_dir, tmp_path, no_training):
    with pytest.raises(DataError, match="no train split"):
        finetune(tiny_model_dir, "qnli", glue_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_line_names_file_and_line_and_leaves_no_output(tiny_model_dir, tmp_path, no_training):
    data = tmp_path / "data" / "sst2"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text('{"sentence": "good", "label": 1}\n{"sentence": "bad", "label": 1\n')
    (data / "validation.jsonl").write_text('{"sentence": "fine", "label": 0}\n')
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"train\.jsonl:2: not valid JSON"):
        finetune(tiny_model_dir, "sst2", tmp_path / "data", out)
    assert not out.exists()
    assert not list(tmp_path.glob(".out.*"))


def test_existing_foreign_output_dir_is_not_replaced(tiny_model_dir, glue_dir, tmp_path, no_training):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds other files"):
        finetune(tiny_model_dir, "sst2", glue_dir, precious)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_data_dir_may_be_the_data_root(glue_dir, tmp_path):
    assert resolve_glue_dir(glue_dir.parent) == glue_dir.parent / "glue"
    assert resolve_glue_dir(glue_dir) == glue_dir
    with pytest.raises(FileNotFoundError, match="no such folder"):
        resolve_glue_dir(tmp_path / "missing")


def test_environment_data_root_without_glue_is_an_error(glue_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LEANBERT_DATA", str(glue_dir.parent))
    assert resolve_glue_dir(None) == glue_dir.parent / "glue"
    monkeypatch.setenv("LEANBERT_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"^\$LEANBERT_DATA=.*: no glue folder"):
        resolve_glue_dir(None)


def test_training_learns_a_keyword_task(tiny_model_dir, tmp_path):
    """Not only metrics in range: the pipeline must fit a task a 1-layer model can learn (a sentiment keyword)."""
    import random

    rng = random.Random(0)
    words = {1: ["great", "wonderful", "superb", "lovely"], 0: ["awful", "terrible", "dreadful", "boring"]}
    filler = ["the", "film", "was", "plot", "acting", "really", "quite", "and"]
    data = tmp_path / "data" / "sst2"
    data.mkdir(parents=True)
    for split, count in (("train", 128), ("validation", 64)):
        rows = []
        for i in range(count):
            sentence = rng.sample(filler, 4) + [rng.choice(words[i % 2])]
            rng.shuffle(sentence)
            rows.append(json.dumps({"sentence": " ".join(sentence), "label": i % 2, "idx": i}) + "\n")
        (data / f"{split}.jsonl").write_text("".join(rows))
    # A random encoder starts slowly (tanh pooler, small init), hence the high rate and 10 epochs.
    result = finetune(tiny_model_dir, "sst2", tmp_path / "data", tmp_path / "out", learning_rate=3e-3, epochs=10,
                      batch_size=16)
    assert result["metrics"]["accuracy"] >= 0.95
    assert result["train"]["loss"] < 0.5


def test_a_model_with_one_token_type_trains_on_a_sentence_pair_task(tmp_path, glue_dir, save_tiny_model):
    """A BERT tokenizer marks a pair's second text with type 1; a type_vocab_size=1 model (Bort) gets none."""
    model = save_tiny_model(tmp_path / "one_type", type_vocab_size=1)
    result = finetune(model, "mrpc", glue_dir, tmp_path / "out", max_train_samples=32, max_eval_samples=32, epochs=1)
    assert math.isfinite(result["main_score"])


def test_a_diverged_run_scores_nan_and_logs_its_nan_losses(tiny_model_dir, glue_dir, tmp_path):
    result = finetune(tiny_model_dir, "sst2", glue_dir, tmp_path / "out", max_train_samples=64, max_eval_samples=64,
                      epochs=2, learning_rate=1e12)
    assert math.isnan(result["main_score"]) and math.isnan(result["metrics"]["accuracy"])
    assert math.isnan(result["train"]["loss"])  # no longer averaged over NaN steps logged as 0.0
