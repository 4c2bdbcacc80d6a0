"""`leanbert pretrain` end to end on a tiny model: logs, checkpoints, final model, bad input, NaN stop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from leanbert.train.jsonl_log import read_log
from leanbert.train.nan_guard import NonFiniteLossError
from leanbert.train.pretrain import run_pretraining
from leanbert.train.recipe import RecipeError, load_recipe
from leanbert.train.seeded_masking import EVAL_EPOCH, SeededMasking, batch_seed
from tiny_run import require_tokenizer, write_recipe


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("pretrain")
    recipe = load_recipe(write_recipe(tmp_path))
    metrics = run_pretraining(recipe)
    return Path(recipe.output_dir), metrics


def test_run_writes_checkpoints_log_metrics_and_final_model(finished_run):
    out, metrics = finished_run
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-10", "checkpoint-20"]
    assert not (out / ".staging").exists()
    for checkpoint in ("checkpoint-10", "checkpoint-20"):
        names = {p.name for p in (out / checkpoint).iterdir()}
        assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"} <= names
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["global_step"] == 20
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))
    assert (out / "recipe.yaml").is_file() and (out / "final" / "recipe.yaml").is_file()


def test_log_history_has_loss_learning_rate_tokens_per_second_and_eval(finished_run):
    out, _ = finished_run
    records = read_log(out / "log_history.jsonl")
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == [5, 10, 15, 20]
    for r in train:
        assert r["tokens_per_second"] > 0 and r["learning_rate"] >= 0 and math.isfinite(r["loss"])
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == [10, 20]
    assert all(r["eval_perplexity"] == pytest.approx(math.exp(r["eval_loss"])) for r in evals)
    # the JSONL log and Trainer's own state agree
    state = json.loads((out / "checkpoint-20" / "trainer_state.json").read_text())
    assert [r.get("loss") for r in state["log_history"]] == [r.get("loss") for r in records[: len(state["log_history"])]]


def test_final_model_loads_with_auto_classes_and_fills_masks(finished_run):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    import leanbert  # noqa: F401  (registers the Auto classes)

    out, _ = finished_run
    model = AutoModelForMaskedLM.from_pretrained(out / "final").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "final")
    batch = tokenizer(["the river runs past an old [MASK]."], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], 30522)
    final = load_file(out / "final" / "model.safetensors")
    last = load_file(out / "checkpoint-20" / "model.safetensors")
    assert all(torch.equal(final[k], last[k]) for k in final)


def test_training_projects_only_masked_positions(tmp_path):
    from transformers import AutoTokenizer

    from leanbert.data.mlm_collator import MLMCollator
    from leanbert.modeling.model import LeanBertForMaskedLM
    from leanbert.presets import preset_config

    tokenizer = AutoTokenizer.from_pretrained(require_tokenizer())
    masking = SeededMasking(MLMCollator(tokenizer, mask_ratio=0.3), seed=0)
    blocks = [{"input_ids": tokenizer("the dog sleeps near the warm stones of the old mill")["input_ids"],
               "block_index": i} for i in range(4)]
    batch = masking(blocks)
    model = LeanBertForMaskedLM(preset_config("bert-tiny", hidden_size=32, num_attention_heads=2,
                                              num_hidden_layers=1, intermediate_size=64))
    out = model(**batch)
    assert out.logits.shape == ((batch["labels"] != -100).sum().item(), 30522)


def test_masks_are_a_function_of_seed_epoch_and_blocks():
    from transformers import AutoTokenizer

    from leanbert.data.mlm_collator import MLMCollator

    tokenizer = AutoTokenizer.from_pretrained(require_tokenizer())
    text = " ".join(["the farmers carry bread to the market in town"] * 6)
    blocks = [{"input_ids": tokenizer(text)["input_ids"], "block_index": i} for i in (3, 9)]
    masking = SeededMasking(MLMCollator(tokenizer, mask_ratio=0.3), seed=5)
    first = masking(blocks)["labels"]
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(masking(blocks)["labels"], first)
    masking.set_epoch(1)
    assert not torch.equal(masking(blocks)["labels"], first)
    with masking.evaluation():
        assert masking.epoch == EVAL_EPOCH
    assert masking.epoch == 1
    assert batch_seed(5, 0, [3, 9]) != batch_seed(5, 0, [9, 3]) != batch_seed(6, 0, [3, 9])


def test_evaluation_masks_do_not_depend_on_how_blocks_are_batched():
    from transformers import AutoTokenizer

    from leanbert.data.mlm_collator import MLMCollator

    tokenizer = AutoTokenizer.from_pretrained(require_tokenizer())
    words = "the farmers carry bread to the market in town while rain falls on the hills".split()
    # blocks of different lengths, so that batching them pads some rows
    blocks = [{"input_ids": tokenizer(" ".join(words[: 6 + i]))["input_ids"], "block_index": i} for i in range(6)]
    masking = SeededMasking(MLMCollator(tokenizer, mask_ratio=0.3, whole_word_masking=False), seed=5)

    def rows(batches):
        out = {}
        for batch in batches:
            collated = masking([blocks[i] for i in batch])
            for row, i in enumerate(batch):
                keep = collated["attention_mask"][row].bool()
                out[i] = {key: collated[key][row][keep].tolist() for key in ("input_ids", "labels")}
                assert (collated["labels"][row][~keep] == -100).all()  # padding is never scored
        return out

    with masking.evaluation():
        whole = rows([range(6)])
        assert rows([[0, 1], [2, 3, 4], [5]]) == whole
        assert rows([[5, 3], [1], [4, 0, 2]]) == whole
        tokenizer.padding_side = "left"
        assert rows([[4, 1, 2], [0, 5, 3]]) == whole
    assert sum(label != -100 for row in whole.values() for label in row["labels"]) > 0
    tokenizer.padding_side = "right"
    assert rows([[0, 1], [2, 3, 4], [5]]) != whole  # training masks are drawn per batch


def _assert_rejected_before_training(tmp_path, recipe_path, match, **kwargs):
    recipe = load_recipe(recipe_path)
    with pytest.raises(ValueError, match=match):
        run_pretraining(recipe, **kwargs)
    assert not (tmp_path / "run").exists(), "bad input must not leave an output folder behind"


def test_unknown_preset_fails_before_anything_is_written(tmp_path):
    path = write_recipe(tmp_path, model={"preset": "bert-hash-giga"})
    _assert_rejected_before_training(tmp_path, path, "unknown preset 'bert-hash-giga'")


def test_tokenizer_that_does_not_fit_fails_before_anything_is_written(tmp_path):
    path = write_recipe(tmp_path, model={"preset": "bert-tiny", "overrides": {"vocab_size": 1000}})
    _assert_rejected_before_training(tmp_path, path, "tokenizer has 30522 tokens but the model's vocab_size is 1000")


def test_bad_training_argument_value_and_missing_corpus_fail_before_anything_is_written(tmp_path):
    path = write_recipe(tmp_path, training={"lr_scheduler_type": "zigzag"})
    _assert_rejected_before_training(tmp_path, path, "tiny.yaml: training: .*zigzag")
    path = write_recipe(tmp_path, data={"corpus": str(tmp_path / "missing.txt")})
    _assert_rejected_before_training(tmp_path, path, "missing.txt: no such corpus file")


def test_cli_reports_unknown_key_with_exit_code_2(tmp_path, capsys):
    from leanbert.cli import main

    path = write_recipe(tmp_path)
    assert main(["pretrain", str(path), "--set", "training.lerning_rate=1e-3"]) == 2
    err = capsys.readouterr().err
    assert "tiny.yaml: unknown key 'training.lerning_rate'; did you mean 'learning_rate'?" in err
    assert not (tmp_path / "run").exists()


def test_existing_run_needs_resume_and_resume_needs_a_checkpoint(tmp_path, finished_run):
    out, _ = finished_run
    recipe = load_recipe(write_recipe(tmp_path))
    with pytest.raises(ValueError, match="already holds a run .*pass --resume"):
        run_pretraining(recipe, output_dir=str(out))
    with pytest.raises(ValueError, match="--resume: no checkpoint-N folder"):
        run_pretraining(recipe, output_dir=str(tmp_path / "empty"), resume=True)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from leanbert.modeling.model import LeanBertForMaskedLM

    forward = LeanBertForMaskedLM.forward
    calls = {"train": 0}

    def poisoned(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        if self.training:
            calls["train"] += 1
            if calls["train"] == 8:
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(LeanBertForMaskedLM, "forward", poisoned)
    recipe = load_recipe(write_recipe(tmp_path, training={"save_steps": 5, "logging_steps": 1}))
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 8.*Last good checkpoint: .*checkpoint-5"):
        run_pretraining(recipe)
    out = Path(recipe.output_dir)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-5"]
    assert not (out / "final").exists()
    weights = load_file(out / "checkpoint-5" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    logged = [r["loss"] for r in read_log(out / "log_history.jsonl") if "loss" in r]
    assert len(logged) == 7 and all(math.isfinite(x) for x in logged)


def test_non_finite_weights_are_never_checkpointed(tmp_path, monkeypatch):
    """A finite loss with overflowing updates: the save-time check refuses the checkpoint."""
    from transformers import TrainerCallback

    class Poison(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 5:
                with torch.no_grad():
                    next(model.parameters()).fill_(float("inf"))

    recipe = load_recipe(write_recipe(tmp_path, training={"save_steps": 5}))
    with pytest.raises(NonFiniteLossError, match="weights became non-finite by step 5"):
        run_pretraining(recipe, extra_callbacks=[Poison()])
    assert not list(Path(recipe.output_dir).glob("checkpoint-*"))


def test_recipe_error_is_a_value_error():
    assert issubclass(RecipeError, ValueError)


def test_save_total_limit_rotates_published_checkpoints(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, training={"max_steps": 10, "save_steps": 5, "save_total_limit": 1}))
    run_pretraining(recipe)
    out = Path(recipe.output_dir)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10"]
    assert not (out / ".staging").exists()


def test_publish_directory_replaces_an_existing_folder_whole(tmp_path):
    from leanbert.atomic_io import publish_directory

    staged, final = tmp_path / "staged", tmp_path / "checkpoint-3"
    staged.mkdir()
    (staged / "new.txt").write_text("new")
    final.mkdir()
    (final / "old.txt").write_text("old")
    publish_directory(staged, final)
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3"]


def test_cli_rejects_a_mistyped_training_value_before_writing_anything(tmp_path, capsys):
    from leanbert.cli import main

    path = write_recipe(tmp_path)
    for assignment, allowed in (("training.learning_rate=abc", "float"), ("training.max_steps=abc", "int"),
                                ("training.seed=abc", "int")):
        assert main(["pretrain", str(path), "--set", assignment]) == 2
        key = assignment.split("=")[0]
        assert capsys.readouterr().err == f"leanbert pretrain: error: {path}: '{key}'='abc'; allowed: {allowed}\n"
    assert not (tmp_path / "run").exists()


def test_explicit_data_dir_must_hold_what_the_recipe_leaves_to_it(tmp_path, capsys):
    from leanbert.cli import main
    from leanbert.train.pretrain import plan_run

    empty = tmp_path / "empty_data"
    empty.mkdir()
    recipe = load_recipe(write_recipe(tmp_path, data={"corpus": None, "tokenizer": None}))
    with pytest.raises(FileNotFoundError, match=r"--data-dir .*empty_data: no corpus/wikipedia_en_2015 or "
                                                r"corpus/gutenberg_nltk folder \(the default corpus\)"):
        plan_run(recipe, data_dir=str(empty))
    recipe = load_recipe(write_recipe(tmp_path, data={"tokenizer": None}))  # the recipe names its corpus
    with pytest.raises(FileNotFoundError, match=r"empty_data: no tokenizers/bert-base-uncased folder"):
        plan_run(recipe, data_dir=str(empty))
    assert main(["pretrain", str(write_recipe(tmp_path, data={"corpus": None})), "--data-dir", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("leanbert pretrain: error: --data-dir ") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_data_root_named_by_environment_must_hold_it_too(tmp_path, monkeypatch):
    from leanbert.train.pretrain import plan_run

    empty = tmp_path / "empty_data"
    empty.mkdir()
    monkeypatch.setenv("LEANBERT_DATA", str(empty))
    recipe = load_recipe(write_recipe(tmp_path, data={"corpus": None, "tokenizer": None}))
    with pytest.raises(FileNotFoundError, match=r"^\$LEANBERT_DATA=.*empty_data: no corpus/wikipedia_en_2015"):
        plan_run(recipe)


def test_without_data_dir_the_default_corpus_is_the_shared_one(tmp_path):
    from leanbert.train.pretrain import plan_run

    recipe = load_recipe(write_recipe(tmp_path, data={"corpus": None, "tokenizer": None}))
    plan = plan_run(recipe)
    if plan.data_root is None:
        pytest.skip("no ../shared/data beside the checkout")
    assert [Path(source).name for source in plan.corpus] == ["wikipedia_en_2015", "gutenberg_nltk"]


def test_a_held_out_split_without_blocks_fails_with_a_data_error(tmp_path, monkeypatch):
    """Held-out documents all shorter than min_tail_tokens: name the cause, not transformers' eval_dataset error."""
    from leanbert.data import corpus

    split = corpus.split_documents

    def short_held_out(documents, fraction, seed):
        splits = split(documents, fraction, seed)
        splits["validation"] = splits["validation"].map(lambda row: {"text": "a dog sleeps."})
        return splits

    monkeypatch.setattr(corpus, "split_documents", short_held_out)
    path = write_recipe(tmp_path)
    _assert_rejected_before_training(tmp_path, path, r"6 held-out document\(s\).*give no block.*min_tail_tokens \(8 tokens")


def test_best_model_at_end_reports_the_exported_model_and_perplexity_is_lower_better(tmp_path):
    import torch
    from safetensors.torch import load_file

    from leanbert.train.pretrain import run_pretraining
    from leanbert.train.recipe import load_recipe

    path = write_recipe(tmp_path, training={"save_steps": 5, "load_best_model_at_end": True,
                                            "metric_for_best_model": "perplexity", "learning_rate": 3e-2})
    metrics = run_pretraining(load_recipe(path))
    state = json.loads((tmp_path / "run" / "checkpoint-20" / "trainer_state.json").read_text())
    evals = {entry["step"]: entry["eval_perplexity"] for entry in state["log_history"] if "eval_perplexity" in entry}
    best_step = min(evals, key=evals.get)
    assert state["best_global_step"] == best_step  # the lowest perplexity, not the highest
    assert metrics["eval_perplexity"] == pytest.approx(evals[best_step], rel=1e-5)
    final = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    best = load_file(str(tmp_path / "run" / f"checkpoint-{best_step}" / "model.safetensors"))
    assert all(torch.equal(final[key], best[key]) for key in final)


def test_split_seed_pins_the_held_out_documents_across_training_seeds(tmp_path):
    from leanbert.train.pretrain import load_blocks, plan_run
    from leanbert.train.recipe import load_recipe

    def held_out(training_seed, split_seed=None):
        path = write_recipe(tmp_path, f"r{training_seed}{split_seed}.yaml", training={"seed": training_seed},
                            data={"split_seed": split_seed})
        plan = plan_run(load_recipe(path), output_dir=str(tmp_path / f"run{training_seed}{split_seed}"))
        return load_blocks(plan)[1]["input_ids"]

    assert held_out(7, split_seed=3) == held_out(8, split_seed=3)
    assert held_out(7) != held_out(8)  # by default the training seed draws them, as before
