"""GLUE runs: tasks x seeds with medians, skipped tasks reported with reasons, bad input caught before training."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest

import leanbert.train.glue_runner as glue_runner
from leanbert.cli import main
from leanbert.data.records import DataError
from leanbert.train.glue_runner import parse_tasks, run_glue, seed_list

FAST = dict(max_train_samples=64, max_eval_samples=128, epochs=1)


def _nothing_written(parent: Path, name: str) -> bool:
    return not (parent / name).exists() and not list(parent.glob(f".{name}.*"))


def test_sst2_and_stsb_with_skips_reported(tiny_model_dir, glue_dir, tmp_path):
    out = tmp_path / "glue"
    results = run_glue(tiny_model_dir, "sst2,stsb,qnli,mnli,rte", glue_dir, "glue_sane", 2, out,
                       save_predictions=True, **FAST)
    tasks = results["tasks"]
    assert list(tasks) == ["sst2", "stsb", "qnli", "mnli", "rte"]  # requested order, nothing dropped
    assert results["tasks_done"] == ["sst2", "stsb"] and results["tasks_skipped"] == ["qnli", "mnli", "rte"]
    assert results["seeds"] == [42, 43]

    sst2 = tasks["sst2"]["metrics"]["accuracy"]
    assert len(sst2["seeds"]) == 2 and all(0.0 <= v <= 1.0 for v in sst2["seeds"])
    assert sst2["median"] == statistics.median(sst2["seeds"])
    stsb = tasks["stsb"]["metrics"]
    assert set(stsb) == {"pearson", "spearmanr"}
    assert all(-1.0 <= v <= 1.0 for metric in stsb.values() for v in metric["seeds"])
    assert tasks["stsb"]["train_examples"] == 64 and tasks["stsb"]["eval_examples"] == {"validation": 128}
    assert results["average_main_score"] == pytest.approx(
        (tasks["sst2"]["main_score"]["median"] + tasks["stsb"]["main_score"]["median"]) / 2)

    assert tasks["qnli"] == {"status": "skipped", "reason": tasks["qnli"]["reason"]}
    assert "missing split(s) train" in tasks["qnli"]["reason"]
    assert "no mnli data" in tasks["mnli"]["reason"] and "no rte data" in tasks["rte"]["reason"]

    on_disk = json.loads((out / "glue_results.json").read_text())
    assert on_disk["tasks"] == json.loads(json.dumps(tasks))
    markdown = (out / "glue_results.md").read_text()
    assert "| sst2 | accuracy |" in markdown and "| stsb | spearmanr |" in markdown
    for name in ("qnli", "mnli", "rte"):
        assert f"| {name} | — | skipped | {tasks[name]['reason']}" in markdown
    for task in ("sst2", "stsb"):
        for seed in (42, 43):
            run = json.loads((out / task / f"seed{seed}" / "results.json").read_text())
            assert run["seed"] == seed and run["protocol"] == "glue_sane"
            assert (out / task / f"seed{seed}" / "predictions_validation.jsonl").is_file()


def test_cli_glue_run_glue_protocol(tiny_model_dir, glue_dir, tmp_path, capsys):
    out = tmp_path / "cli_glue"
    code = main(["glue", "--model", str(tiny_model_dir), "--tasks", "sst2,wnli", "--data-dir", str(glue_dir.parent),
                 "--protocol", "run_glue", "--output-dir", str(out), "--max-train-samples", "64", "--epochs", "1"])
    assert code == 0
    results = json.loads((out / "glue_results.json").read_text())
    assert results["protocol"] == "run_glue" and results["seeds"] == [42]  # run_glue: one seed
    assert results["settings"]["epochs"] == 1 and results["settings"]["max_train_samples"] == 64
    assert results["tasks_done"] == ["sst2", "wnli"]
    assert "| wnli | accuracy |" in capsys.readouterr().out


def test_mnli_scores_both_dev_sets(tiny_model_dir, tmp_path):
    data = tmp_path / "data" / "mnli"
    data.mkdir(parents=True)
    rows = [{"premise": f"a man plays {i}", "hypothesis": f"someone plays {i % 3}", "label": i % 3, "idx": i}
            for i in range(24)]
    for split in ("train", "validation_matched", "validation_mismatched"):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    results = run_glue(tiny_model_dir, ["mnli"], tmp_path / "data", "run_glue", None, tmp_path / "out", epochs=1)
    metrics = results["tasks"]["mnli"]["metrics"]
    assert set(metrics) == {"accuracy_matched", "accuracy_mismatched"}
    assert results["tasks"]["mnli"]["eval_examples"] == {"validation_matched": 24, "validation_mismatched": 24}


def test_original_tsv_folders_are_read(tiny_model_dir, glue_dir, tmp_path):
    folder = tmp_path / "data" / "SST-2"
    folder.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        lines = (glue_dir / "sst2" / "original" / name).read_text().splitlines()[:41]
        (folder / name).write_text("\n".join(lines) + "\n")
    results = run_glue(tiny_model_dir, "sst2", tmp_path / "data", "run_glue", 1, tmp_path / "out", epochs=1)
    assert results["tasks"]["sst2"]["train_examples"] == 40
    assert results["tasks"]["sst2"]["eval_examples"] == {"validation": 40}


def _small_copy(glue_dir: Path, target: Path, tasks: tuple[str, ...], rows: int = 40) -> Path:
    for task in tasks:
        (target / task).mkdir(parents=True)
        for split in ("train", "validation"):
            lines = (glue_dir / task / f"{split}.jsonl").read_text().splitlines()[:rows]
            (target / task / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return target


BAD_LINES = {
    "malformed": ('{"sentence1": "a", "sentence2": "b", "label": 1', r"not valid JSON"),
    "missing column": ('{"sentence1": "a", "label": 1, "idx": 3}', r"missing field 'sentence2' for task mrpc"),
    "empty text": ('{"sentence1": "a", "sentence2": "   ", "label": 1}', r"empty 'sentence2'"),
    "label out of range": ('{"sentence1": "a", "sentence2": "b", "label": 2}', r"label 2 out of range for task mrpc"),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_bad_line_in_the_last_task_fails_before_any_training(case, tiny_model_dir, glue_dir, tmp_path, no_training):
    data = _small_copy(glue_dir, tmp_path / "data", ("sst2", "mrpc"))
    train = data / "mrpc" / "train.jsonl"
    lines = train.read_text().splitlines()
    bad, message = BAD_LINES[case]
    lines[6] = bad  # line 7
    train.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{train}:7: {message}"):
        run_glue(tiny_model_dir, "sst2,mrpc", data, "glue_sane", 2, tmp_path / "glue")
    assert _nothing_written(tmp_path, "glue")


def test_unknown_task_lists_the_valid_ones(tiny_model_dir, glue_dir, tmp_path, no_training):
    with pytest.raises(DataError, match="unknown GLUE task 'sst3'; valid tasks: cola, sst2"):
        run_glue(tiny_model_dir, "sst2,sst3", glue_dir, output_dir=tmp_path / "glue")
    assert _nothing_written(tmp_path, "glue")


def test_tokenizer_not_fitting_the_model_fails_before_training(glue_dir, tmp_path, no_training, save_tiny_model):
    model = tmp_path / "small_vocab"
    save_tiny_model(model, vocab_size=2000)
    with pytest.raises(ValueError, match="vocab_size is 2000"):
        run_glue(model, "sst2", glue_dir, output_dir=tmp_path / "glue")
    assert _nothing_written(tmp_path, "glue")


def test_cli_bad_input_is_one_line_exit_2(tiny_model_dir, glue_dir, tmp_path, capsys, no_training):
    data = _small_copy(glue_dir, tmp_path / "data", ("sst2",))
    (data / "sst2" / "validation.jsonl").write_text('{"sentence": "ok", "label": 1}\n{"sentence": "x", "label": 5}\n')
    code = main(["glue", "--model", str(tiny_model_dir), "--tasks", "sst2", "--data-dir", str(data),
                 "--output-dir", str(tmp_path / "glue")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"{data / 'sst2' / 'validation.jsonl'}:2: label 5 out of range" in err
    assert _nothing_written(tmp_path, "glue")


def test_failure_during_training_leaves_no_output(tiny_model_dir, glue_dir, tmp_path, monkeypatch):
    data = _small_copy(glue_dir, tmp_path / "data", ("sst2", "cola"))
    real = glue_runner.finetune_task
    calls = []

    def second_task_crashes(source, task_data, *args, **kwargs):
        calls.append(task_data.task.name)
        if task_data.task.name == "cola":
            raise RuntimeError("simulated crash")
        return real(source, task_data, *args, **kwargs)

    monkeypatch.setattr(glue_runner, "finetune_task", second_task_crashes)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_glue(tiny_model_dir, "sst2,cola", data, "run_glue", 1, tmp_path / "glue", epochs=1)
    assert calls == ["sst2", "cola"]
    assert _nothing_written(tmp_path, "glue")


def test_rerun_replaces_an_earlier_result(tiny_model_dir, glue_dir, tmp_path):
    data = _small_copy(glue_dir, tmp_path / "data", ("wnli",))
    out = tmp_path / "glue"
    run_glue(tiny_model_dir, "wnli", data, "run_glue", 1, out, epochs=1, first_seed=1)
    run_glue(tiny_model_dir, "wnli", data, "run_glue", 1, out, epochs=1, first_seed=5)
    assert json.loads((out / "glue_results.json").read_text())["seeds"] == [5]
    assert [p.name for p in (out / "wnli").iterdir()] == ["seed5"]
    shutil.rmtree(out)


def test_task_and_seed_parsing():
    assert parse_tasks("SST2, mrpc,sst2") == ["sst2", "mrpc"]
    assert parse_tasks(None) == parse_tasks("all") == [
        "cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"]
    with pytest.raises(ValueError, match="no GLUE task"):
        parse_tasks(" , ")
    assert seed_list(3, default_count=5) == [42, 43, 44]
    assert seed_list(None, default_count=2, first_seed=0) == [0, 1]
    assert seed_list([7, 7, 1], default_count=5) == [7, 1]
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        seed_list(0, default_count=5)


def test_pretrain_run_folder_to_glue_to_report(tiny_model_dir, glue_dir, tmp_path):
    """`leanbert glue --model RUN` reads RUN/final, writes RUN/glue; `leanbert report RUN` then shows it."""
    from leanbert.train.pretrain import FINAL_DIR_NAME

    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / FINAL_DIR_NAME)
    (run / "log_history.jsonl").write_text("".join(
        json.dumps({"loss": 10.0 - step, "learning_rate": 1e-3, "tokens_per_second": 5000.0, "step": step}) + "\n"
        for step in range(1, 6)))
    (run / "metrics.json").write_text(json.dumps({"eval_loss": 9.5, "eval_perplexity": 13360.0}))
    assert main(["glue", "--model", str(run), "--tasks", "sst2,rte", "--data-dir", str(glue_dir), "--seeds", "1",
                 "--max-train-samples", "32", "--max-eval-samples", "64", "--epochs", "1"]) == 0
    assert json.loads((run / "glue" / "glue_results.json").read_text())["tasks_done"] == ["sst2"]
    assert main(["report", str(run)]) == 0
    text = (run / "report" / "report.md").read_text()
    assert "| held-out MLM loss (metrics.json) | 9.5 |" in text
    assert "| 1,002,816 | not run | not run |" in text  # tiny model's count; MNLI and MRPC were not requested
    assert "| rte | — | skipped |" in text
    assert (run / "report" / "loss.png").is_file() and (run / "report" / "glue.png").is_file()


def _run(seed: int, score: float) -> dict:
    return {"seed": seed, "data": "d", "train": {"examples": 8}, "evaluation": {"validation": {"examples": 4}},
            "metrics": {"pearson": score}, "main_score": score}


@pytest.mark.parametrize("order", [(0, 1, 2), (1, 2, 0), (2, 0, 1)])
def test_a_diverged_seed_is_named_and_left_out_of_the_median(order):
    runs = [_run(42, float("nan")), _run(43, 0.5), _run(44, 0.7)]
    summary = glue_runner._summarize_task([runs[i] for i in order])
    assert summary["main_score"]["median"] == summary["metrics"]["pearson"]["median"] == pytest.approx(0.6)
    assert summary["diverged_seeds"] == [42]
    all_diverged = glue_runner._summarize_task([_run(42, float("nan")), _run(43, float("inf"))])
    assert all_diverged["main_score"]["median"] is None and all_diverged["diverged_seeds"] == [42, 43]
    assert glue_runner._average_main_score([summary, all_diverged]) is None
    assert glue_runner._average_main_score([summary]) == pytest.approx(0.6)
