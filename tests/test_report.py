"""`leanbert report`: Markdown + PNGs from synthetic logs and GLUE results, tolerant of whatever is missing."""

from __future__ import annotations

import json
import math

import pytest

from leanbert.cli import main
from leanbert.glue_reference import BERT_HASH_ROWS, ULTRAFASTBERT_ROW
from leanbert.presets import preset_config
from leanbert.report import find_glue_results, load_log_history, training_curves, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _log_history(steps: int = 20, every: int = 10) -> list[dict]:
    """Entries shaped like Trainer's: training logs, eval logs every 50 steps, and the final summary."""
    history = []
    for step in range(every, steps * every + 1, every):
        history.append({"loss": 2.0 + 8.0 * math.exp(-step / 60), "grad_norm": 1.0,
                        "learning_rate": 5e-4 * min(1.0, step / 50), "epoch": step / 200, "step": step,
                        "num_input_tokens_seen": step * 4096, "train_runtime": step * 0.5})
        if step % 50 == 0:
            history.append({"eval_loss": 2.5 + 8.0 * math.exp(-step / 60), "epoch": step / 200, "step": step})
    history.append({"train_runtime": steps * every * 0.5, "train_loss": 4.2, "train_samples_per_second": 12.0,
                    "step": steps * every, "epoch": 1.0})
    return history


def _glue_results(tasks: dict[str, dict[str, list[float]]], skipped: dict[str, str]) -> dict:
    """A glue_results.json as run_glue writes it, from per-seed values."""
    seeds = [42, 43, 44]
    entries = {}
    for task, metrics in tasks.items():
        per_seed = [sum(values[i] for values in metrics.values()) / len(metrics) for i in range(len(seeds))]
        entries[task] = {
            "status": "done", "data": f"/data/{task}", "train_examples": 100, "eval_examples": {"validation": 50},
            "metrics": {name: {"median": sorted(values)[1], "seeds": values} for name, values in metrics.items()},
            "main_score": {"median": sorted(per_seed)[1], "seeds": per_seed}, "runs": [],
        }
    entries.update({task: {"status": "skipped", "reason": reason} for task, reason in skipped.items()})
    return {
        "model": "runs/nano", "protocol": "glue_sane", "protocol_source": "GLUE-sane", "seeds": seeds,
        "settings": {"max_seq_length": 128, "batch_size": 32, "learning_rate": 1e-4, "epochs": 5.0,
                     "warmup_ratio": 0.1, "weight_decay": 0.01, "lr_scheduler": "linear",
                     "max_train_samples": None, "max_eval_samples": None},
        "data": "/data", "tasks": entries, "tasks_done": list(tasks), "tasks_skipped": list(skipped),
        "average_main_score": 0.7,
    }


def test_report_from_the_last_checkpoints_trainer_state(tmp_path):
    run = tmp_path / "run"
    for step, history in ((100, _log_history(steps=10)), (200, _log_history(steps=20))):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        (run / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    report = write_report(run)
    assert report == run / "report" / "report.md"
    text = report.read_text()
    assert "checkpoint-200/trainer_state.json" in text and "(25 entries)" in text
    for png in ("loss.png", "learning_rate.png", "tokens_per_second.png"):
        assert f"]({png})" in text
        assert (run / "report" / png).read_bytes()[:8] == PNG_MAGIC
    assert "| tokens/s (median over logs) | 8,192 |" in text  # 40,960 tokens per 5 s between logs
    assert "| training loss (first / last / min) |" in text and "(steps 10–200)" in text
    assert "No glue_results.json" in text
    assert not list((run / "report").glob(".*"))  # no temporary files left


def test_jsonl_log_with_a_cut_line_and_missing_fields(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [json.dumps({"loss": 9.0 - step / 10, "step": step, "tokens_per_second": 1000.0 + step})
             for step in range(1, 11)]
    lines.insert(3, json.dumps({"step": 4, "grad_norm": 0.5}))  # no loss, no learning rate
    lines.append('{"loss": 1.0, "st')  # a crash mid-write
    (run / "log_history.jsonl").write_text("\n".join(lines) + "\n")
    history = load_log_history(run)
    assert len(history.entries) == 11 and history.unreadable_lines == 1
    curves = training_curves(history.entries)
    assert set(curves) == {"loss", "tokens_per_second"}  # explicit tokens/s wins over any derived value
    assert curves["tokens_per_second"][1][0] == 1001.0
    out = tmp_path / "elsewhere"
    report = write_report(run, out)
    text = report.read_text()
    assert report.parent == out and "1 unreadable line(s) skipped" in text
    assert "_No learning rate values in the logs._" in text
    assert (out / "loss.png").is_file() and not (out / "learning_rate.png").exists()


def test_nonfinite_losses_and_resumed_summaries_are_reported_as_they_are(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    history = [{"loss": 5.0 - step, "step": step} for step in (1, 2)] + [
        {"loss": float("nan"), "step": 3}, {"train_loss": 3.5, "train_runtime": 9.0, "step": 3}]
    (run / "log_history.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in history))
    (run / "metrics.json").write_text(json.dumps({"eval_loss": 800.0, "eval_perplexity": float("inf"),
                                                  "train_loss_first_step": 3}))
    text = write_report(run).read_text()
    assert "| **NaN or inf loss logged** (steps) | 3 |" in text
    assert "| held-out perplexity (metrics.json) | inf |" in text  # it used to be left out, with the loss row
    assert "| mean training loss (steps 3 on, since --resume) | 3.5 |" in text


def test_curves_skip_the_summary_and_fall_back_to_the_running_average():
    entries = [{"loss": 3.0, "step": 1, "train_tokens_per_second": 500.0},
               {"loss": 2.0, "step": 2, "train_tokens_per_second": 700.0},
               {"train_loss": 2.5, "train_runtime": 9.0, "step": 2}]
    curves = training_curves(entries)
    assert curves["loss"] == ([1.0, 2.0], [3.0, 2.0])
    assert curves["tokens_per_second"] == ([1.0, 2.0], [500.0, 700.0])
    assert training_curves([]) == {}


def test_glue_table_against_the_seed_rows(tmp_path):
    run = tmp_path / "run"
    (run / "glue").mkdir(parents=True)
    results = _glue_results(
        {"sst2": {"accuracy": [0.80, 0.81, 0.79]}, "mrpc": {"accuracy": [0.70, 0.71, 0.69], "f1": [0.81, 0.82, 0.80]}},
        {"mnli": "no mnli data in /data", "qnli": "missing split(s) train"},
    )
    (run / "glue" / "glue_results.json").write_text(json.dumps(results))
    preset_config("bert-hash-nano").save_pretrained(run)  # config only: the count needs no weights
    assert find_glue_results(run) == run / "glue" / "glue_results.json"
    text = write_report(run).read_text()
    assert "_No loss, learning-rate or throughput values in the logs._" in text
    ours = next(line for line in text.splitlines() if line.startswith("| **this run**") and "parameters" not in line)
    assert ours.endswith("| 969,504 | skipped | 0.8100 / 0.7000 | 0.8000 |")  # the published nano count  # MNLI skipped, MRPC f1/acc, SST-2
    for row in BERT_HASH_ROWS:
        assert f"| {row.model} | {row.parameters} |" in text
    assert "| bert-hash-nano | 0.969M | 0.6565 / 0.6670 | 0.8172 / 0.7083 | 0.8131 |" in text
    assert "| majority class (floor) | 0 | — | 0.8122 / 0.6838 | 0.5092 |" in text
    assert f"| {ULTRAFASTBERT_ROW.model} | 0.8130 | 0.8760 | 0.8970 | 0.8990 | 0.8640 | 0.8750 | 0.6070 | 0.8300 |" in text
    assert "| qnli | — | skipped | missing split(s) train |" in text  # the per-seed table keeps the skips
    assert (run / "report" / "glue.png").read_bytes()[:8] == PNG_MAGIC


def test_partial_glue_file_still_gives_a_report(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "glue_results.json").write_text(json.dumps({"tasks": {"sst2": {"status": "done",
                                                                          "metrics": {"accuracy": {"median": 0.5}}}}}))
    text = write_report(run).read_text()
    assert "| 0.5000 |" in text and "lacks" in text


def test_cli_report_and_missing_run_dir(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "trainer_state.json").write_text(json.dumps({"log_history": _log_history()}))
    assert main(["report", str(run), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.md").is_file()
    assert str(tmp_path / "r" / "report.md") in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nope")
