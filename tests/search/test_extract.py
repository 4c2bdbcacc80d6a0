"""`leanbert search` end to end on tiny models: costs, proxy runs, the report, resume and bad input."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from leanbert.cli import main
from leanbert.search.extract import COSTS_FILE, PROXY_RESULT, RESULT_FILE, run_search
from leanbert.train.recipe import RecipeError, load_recipe
from tiny_run import save_tiny_teacher, write_recipe

SPACE = {"num_hidden_layers": [1, 2], "hidden_size": [32, 48], "num_attention_heads": [2, 3]}  # 32 / 3 refused


def _recipe(tmp_path: Path, **search):
    return write_recipe(tmp_path, name="search.yaml",
                        data={"tokenizer": None},  # the data root's: a resume must name the same root
                        training={"max_steps": 6, "save_steps": 3, "logging_steps": 3},
                        search={"space": SPACE, "speed_repeats": 2, **search})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("search")
    recipe = load_recipe(_recipe(tmp_path), kind="search")
    return recipe, run_search(recipe), Path(recipe.output_dir)


def test_every_valid_candidate_is_costed_trained_and_reported(finished):
    recipe, result, out = finished
    names = [r["name"] for r in result["candidates"]]
    # the space's order: layers, hidden, heads
    assert names == ["L1-A2-H32", "L1-A2-H48", "L1-A3-H48", "L2-A2-H32", "L2-A2-H48", "L2-A3-H48"]
    assert [r["name"] for r in result["refused"]] == ["L1-A3-H32", "L2-A3-H32"]
    assert result["refused"][0]["reason"].startswith("LeanBertConfig.hidden_size=32 is not divisible")
    assert json.loads((out / RESULT_FILE).read_text()) == json.loads(json.dumps(result))
    assert (out / "search.md").is_file() and (out / "pareto.png").stat().st_size > 1000
    assert result["host"]["cpu"] and result["threads"] >= 1  # the machine the time ratios belong to
    rows = {r["name"]: r for r in result["candidates"]}
    # T is the largest, and every ratio is against it
    assert result["reference"] == "L2-A2-H48"
    assert max(r["params"] for r in rows.values()) == rows["L2-A2-H48"]["params"]
    assert rows["L2-A2-H48"]["params_ratio"] == 1.0 and rows["L2-A2-H48"]["time_ratio"] == 1.0
    for r in rows.values():
        assert r["status"] == "done" and math.isfinite(r["eval_loss"])
        assert r["time_ratio"] > 0 and r["seconds"] > 0
        # e is the proxy run's own held-out loss, and the run is a complete pretraining folder
        metrics = json.loads((Path(r["run"]) / "metrics.json").read_text())
        assert metrics["eval_loss"] == r["eval_loss"] and metrics["global_step"] == 6
        assert (Path(r["run"]) / "final" / "model.safetensors").is_file()
        config = json.loads((Path(r["run"]) / "final" / "config.json").read_text())
        assert {k: config[k] for k in r["fields"]} == r["fields"]


def test_the_choice_is_eligible_on_the_front_and_the_cheapest(finished):
    _, result, _ = finished
    rows = result["candidates"]
    chosen = next(r for r in rows if r["name"] == result["chosen"])
    assert chosen["eligible"] and chosen["on_front"]
    assert all(chosen["cost"] <= r["cost"] for r in rows if r["eligible"])
    best = min(r["eval_loss"] for r in rows)
    assert all(r["eligible"] == (r["eval_loss"] <= 1.02 * best) for r in rows)


def test_the_chosen_model_loads_with_the_auto_classes(finished):
    from transformers import AutoModelForMaskedLM

    import leanbert  # noqa: F401

    _, result, _ = finished
    run = next(r["run"] for r in result["candidates"] if r["name"] == result["chosen"])
    model = AutoModelForMaskedLM.from_pretrained(Path(run) / "final")
    assert model.config.num_hidden_layers == next(r for r in result["candidates"]
                                                  if r["name"] == result["chosen"])["fields"]["num_hidden_layers"]


def test_an_interrupted_search_resumes_to_the_same_result(finished, tmp_path):
    recipe, result, out = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / RESULT_FILE).unlink()
    # one candidate killed after its first checkpoint, one never started (nor timed), one stopped after its
    # run but before its result was noted
    killed = copy / "candidates" / "L1-A2-H48"
    for name in (PROXY_RESULT, "metrics.json"):
        (killed / name).unlink()
    for name in ("final", "checkpoint-6"):
        shutil.rmtree(killed / name)
    noted_late = copy / "candidates" / "L1-A2-H32"
    (noted_late / PROXY_RESULT).unlink()
    late_metrics = (noted_late / "metrics.json").stat().st_mtime_ns
    shutil.rmtree(copy / "candidates" / "L2-A2-H48")
    costs = json.loads((copy / COSTS_FILE).read_text())
    del costs["candidates"]["L2-A2-H48"]
    (copy / COSTS_FILE).write_text(json.dumps(costs))

    resumed = run_search(recipe, output_dir=str(copy), resume=True)
    want = {r["name"]: r["eval_loss"] for r in result["candidates"]}
    got = {r["name"]: r["eval_loss"] for r in resumed["candidates"]}
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == pytest.approx(want[name], abs=1e-6), name
    assert resumed["reference"] == result["reference"]
    # the killed run went on from its checkpoint; the finished one was read back, not trained again
    assert json.loads((killed / "metrics.json").read_text())["train_loss_first_step"] == 4
    assert (noted_late / "metrics.json").stat().st_mtime_ns == late_metrics
    # measured costs are kept as they were
    kept = json.loads((copy / COSTS_FILE).read_text())["candidates"]
    assert {name: kept[name] for name in costs["candidates"]} == costs["candidates"]


def _no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a proxy run was started")

    monkeypatch.setattr("leanbert.train.pretrain.run_pretraining", refuse)


def test_new_choice_knobs_only_resummarise_and_other_changes_are_refused(finished, tmp_path, monkeypatch):
    recipe, result, out = finished
    with pytest.raises(ValueError, match="already holds a search .*; pass --resume"):
        run_search(recipe)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    _no_training(monkeypatch)
    wide = load_recipe(recipe.path, ["search.error_tolerance=0.5", "search.params_weight=0"], kind="search")
    again = run_search(wide, output_dir=str(copy), resume=True)
    assert again["error_tolerance"] == 0.5 and all(r["eligible"] for r in again["candidates"])
    assert [r["eval_loss"] for r in again["candidates"]] == [r["eval_loss"] for r in result["candidates"]]
    assert "error_tolerance: 0.5" in (copy / "search_recipe.yaml").read_text()
    changed = load_recipe(recipe.path, ["training.max_steps=7"], kind="search")
    with pytest.raises(ValueError, match="differs from the recipe this search started with .* beyond the choice"):
        run_search(changed, output_dir=str(copy), resume=True)
    with pytest.raises(ValueError, match="read its data from .*/shared/data, not .*give the same --data-dir"):
        run_search(recipe, output_dir=str(copy), resume=True, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="holds no search; start without --resume"):
        run_search(recipe, output_dir=str(tmp_path / "empty"), resume=True)
    reordered = load_recipe(recipe.path, ["search.space={num_hidden_layers: [1, 2], num_attention_heads: [2, 3], "
                                          "hidden_size: [32, 48]}"], kind="search")
    with pytest.raises(ValueError, match="differs from the recipe this search started with"):
        run_search(reordered, output_dir=str(copy), resume=True)


def test_a_folder_with_a_search_s_files_but_no_record_of_its_inputs_is_refused(finished, tmp_path):
    recipe, _, out = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "search_inputs.json").unlink()
    with pytest.raises(ValueError, match="already holds a search .*costs.json.*; pass --resume"):
        run_search(recipe, output_dir=str(copy))
    with pytest.raises(ValueError, match="holds a search's files .* but not search_inputs.json"):
        run_search(recipe, output_dir=str(copy), resume=True)


@pytest.mark.parametrize("overrides, message", [
    (["data.validation_fraction=0"], "needs data.validation_fraction > 0"),
    (["search.speed_length=1024"], "search.speed_length=1024 exceeds max_position_embeddings=512 of candidate "
                                   "L1-A2-H32"),
    (["search.space={max_position_embeddings: [64, 16]}"],
     "data.block_size=32 exceeds max_position_embeddings=16 of candidate max_position_embeddings=16"),
    (["search.space={hidden_size: [30], num_attention_heads: [4]}"],
     r"search.space gives no valid architecture \(A4-H30: LeanBertConfig"),
    (["search.space={num_hidden_layers: [1], ffn_type: [dense, fast]}"],
     "'search.space.ffn_type' value 'fast' is refused in every combination: LeanBertConfig.ffn_type='fast'"),
    (["search.space={num_hidden_layers: [1, 2.0]}"], "'search.space.num_hidden_layers' value 2.0 is refused"),
    (["search.space={num_hidden_layers: [1], vocab_size: [30522, 8000]}"],
     "candidate vocab_size=8000: .*tokenizer"),
    (["data.corpus=/no/such/corpus.txt"], "candidate L1-A2-H32: .*/no/such/corpus.txt"),
    (["training.lr_scheduler_type=linearr"], "candidate L1-A2-H32: .*training: .*linearr"),
    (["search.error_tolerance=.nan"], "'search.error_tolerance'=nan; allowed: a finite number >= 0"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, overrides, message):
    with pytest.raises(RecipeError, match=message):
        recipe = load_recipe(_recipe(tmp_path), overrides, kind="search")
        run_search(recipe)
    assert not (tmp_path / "run").exists()


def test_a_search_whose_every_run_diverges_reports_it(tmp_path, capsys):
    path = _recipe(tmp_path, space={"num_hidden_layers": [1, 2]})
    assert main(["search", str(path), "--set", "training.learning_rate=1e9"]) == 0
    assert "every proxy run diverged" in capsys.readouterr().out
    out = tmp_path / "run"

    def strict(constant):
        raise ValueError(f"not JSON: {constant}")

    result = json.loads((out / RESULT_FILE).read_text(), parse_constant=strict)
    assert result["chosen"] is None
    assert all(r["status"] == "diverged" and r["eval_loss"] is None for r in result["candidates"])
    assert "every proxy run diverged" in (out / "search.md").read_text()
    assert (out / "pareto.png").is_file()


def test_the_command_line_reports_bad_input_with_exit_code_2(tmp_path, capsys):
    path = _recipe(tmp_path, space={"hiden_size": [32]})
    assert main(["search", str(path)]) == 2
    assert "unknown key 'search.space.hiden_size'" in capsys.readouterr().err


def test_a_recipe_with_a_distill_section_proxies_by_distillation(tmp_path):
    teacher = save_tiny_teacher(tmp_path / "teacher", with_mlm_head=True)
    path = write_recipe(tmp_path, name="kd.yaml", training={"max_steps": 4, "save_steps": 4, "logging_steps": 2},
                        distill={"teacher": str(teacher), "mlm_weight": 0.1, "logit_weight": 0.5},
                        search={"space": {"num_hidden_layers": [1, 2]}, "speed_repeats": 1})
    result = run_search(load_recipe(path, kind="search"))
    for row in result["candidates"]:
        metrics = json.loads((Path(row["run"]) / "metrics.json").read_text())
        assert metrics["distill_mode"] == "logits" and metrics["eval_loss"] == row["eval_loss"]


def test_a_distillation_search_keeps_one_teacher_cache_per_student_depth(tmp_path):
    teacher = save_tiny_teacher(tmp_path / "teacher", with_mlm_head=False)  # hidden states, layers by depth
    cache = tmp_path / "teacher_cache"
    path = write_recipe(tmp_path, name="kd.yaml", training={"max_steps": 4, "save_steps": 4, "logging_steps": 2},
                        distill={"teacher": str(teacher), "hidden_layers": "uniform", "cache_dir": str(cache)},
                        search={"space": {"num_hidden_layers": [1, 2]}, "speed_repeats": 1})
    result = run_search(load_recipe(path, kind="search"))
    assert all(r["status"] == "done" for r in result["candidates"])
    assert sorted(p.name for p in cache.iterdir()) == ["student-layers-1", "student-layers-2"]
