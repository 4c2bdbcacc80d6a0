"""Recipes: --set typing, unknown keys at every level (with the file and a suggestion), shipped recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from leanbert.train.recipe import (
    RecipeError,
    apply_override,
    build_model_config,
    corpus_sources,
    load_recipe,
    parse_value,
)

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _write(tmp_path: Path, tree: dict, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def _minimal(**extra) -> dict:
    return {"source": "test", "model": {"preset": "bert-tiny"}, **extra}


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate_and_say_where_numbers_come_from(path):
    tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    recipe = load_recipe(path, kind="search" if "search" in tree else "distill" if "distill" in tree else "pretrain")
    assert len(recipe.source) > 40
    config = build_model_config(recipe)
    assert config.max_position_embeddings >= recipe.data.block_size


def test_the_shipped_recipes_exist():
    assert {p.name for p in RECIPES.glob("*.yaml")} >= {"bert-hash-nano.yaml", "bert-tiny.yaml", "bort-kd.yaml",
                                                       "bort-search.yaml"}


@pytest.mark.parametrize(
    "tree, key, suggestion",
    [
        (_minimal(training={"lerning_rate": 1e-3}), "training.lerning_rate", "learning_rate"),
        (_minimal(trainin={"max_steps": 3}), "trainin", "training"),
        (_minimal(data={"blok_size": 64}), "data.blok_size", "block_size"),
        ({"source": "t", "model": {"preset": "bert-tiny", "overrides": {"hiden_size": 64}}},
         "model.overrides.hiden_size", "hidden_size"),
        ({"source": "t", "model": {"config": {"num_hidden_layer": 2}}}, "model.config.num_hidden_layer",
         "num_hidden_layers"),
        ({"source": "t", "model": {"prest": "bert-tiny"}}, "model.prest", "preset"),
    ],
)
def test_unknown_key_names_file_key_and_closest_match(tmp_path, tree, key, suggestion):
    path = _write(tmp_path, tree)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    message = str(err.value)
    assert message.startswith(str(path))
    assert f"unknown key '{key}'" in message
    assert f"did you mean '{suggestion}'?" in message


def test_unknown_key_from_set_is_caught_too(tmp_path):
    path = _write(tmp_path, _minimal())
    with pytest.raises(RecipeError, match=r"unknown key 'training.max_step'; did you mean 'max_steps'\?"):
        load_recipe(path, ["training.max_step=5"])


def test_distill_section_only_in_distill_recipes(tmp_path):
    path = _write(tmp_path, _minimal(distill={"teacher": "some/teacher"}))
    with pytest.raises(RecipeError, match="unknown key 'distill'"):
        load_recipe(path, kind="pretrain")
    recipe = load_recipe(path, kind="distill")
    assert recipe.distill.teacher == "some/teacher" and recipe.distill.temperature == 2.0
    with pytest.raises(RecipeError, match=r"unknown key 'distill.temprature'; did you mean 'temperature'\?"):
        load_recipe(path, ["distill.temprature=3"], kind="distill")
    with pytest.raises(RecipeError, match="distill.mode"):
        load_recipe(path, ["distill.mode=attention"], kind="distill")


def test_set_values_are_yaml_typed_and_create_nested_keys(tmp_path):
    path = _write(tmp_path, _minimal(training={"learning_rate": 0.1}))
    recipe = load_recipe(path, [
        "training.learning_rate=1e-3",
        "training.max_steps=12",
        "data.whole_word_masking=true",
        "data.corpus=[a.txt, b.txt]",
        "model.overrides.hidden_size=64",
    ])
    assert recipe.training["learning_rate"] == pytest.approx(1e-3) and isinstance(recipe.training["learning_rate"], float)
    assert recipe.training["max_steps"] == 12
    assert recipe.data.whole_word_masking is True
    assert recipe.data.corpus == ["a.txt", "b.txt"]
    assert build_model_config(recipe).hidden_size == 64
    assert parse_value("null") is None and parse_value("2.5e-4") == pytest.approx(2.5e-4)


def test_exponent_floats_in_the_file_are_floats(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("source: t\nmodel: {preset: bert-tiny}\ntraining: {learning_rate: 1e-3, adam_epsilon: 1e-6}\n")
    recipe = load_recipe(path)
    assert recipe.training == {"learning_rate": 1e-3, "adam_epsilon": 1e-6}


def test_malformed_set(tmp_path):
    with pytest.raises(RecipeError, match="not of the form"):
        apply_override({}, "training.max_steps", "x.yaml")
    with pytest.raises(RecipeError, match="is a value, not a section"):
        apply_override({"source": "t"}, "source.x=1", "x.yaml")


def test_source_is_required(tmp_path):
    path = _write(tmp_path, {"model": {"preset": "bert-tiny"}})
    with pytest.raises(RecipeError, match="'source' is required"):
        load_recipe(path)


def test_model_needs_exactly_one_of_preset_or_config(tmp_path):
    with pytest.raises(RecipeError, match="exactly one of 'preset'"):
        load_recipe(_write(tmp_path, {"source": "t", "model": {}}))
    with pytest.raises(RecipeError, match="exactly one of 'preset'"):
        load_recipe(_write(tmp_path, {"source": "t", "model": {"preset": "bert-tiny", "config": {}}}))


def test_unknown_preset_and_bad_config_values_name_the_file(tmp_path):
    path = _write(tmp_path, {"source": "t", "model": {"preset": "bert-huge"}})
    with pytest.raises(RecipeError, match=r"x.yaml: model: unknown preset 'bert-huge'; allowed: \["):
        build_model_config(load_recipe(path))
    path = _write(tmp_path, {"source": "t", "model": {"preset": "bert-tiny", "overrides": {"num_attention_heads": 3}}})
    with pytest.raises(RecipeError, match="x.yaml: model: .*hidden_size=128 is not divisible"):
        build_model_config(load_recipe(path))


@pytest.mark.parametrize("key, value", [("output_dir", "elsewhere"), ("dataloader_persistent_workers", True)])
def test_keys_leanbert_sets_itself_are_refused(tmp_path, key, value):
    # persistent workers would freeze the masking epoch at the one they started in
    path = _write(tmp_path, _minimal(training={key: value}))
    with pytest.raises(RecipeError, match=f"'training.{key}' is set by leanbert"):
        load_recipe(path)


def test_section_value_types_are_checked(tmp_path):
    path = _write(tmp_path, _minimal(data={"block_size": "big"}))
    with pytest.raises(RecipeError, match="'data.block_size'='big'; allowed: int"):
        load_recipe(path)
    path = _write(tmp_path, _minimal(data={"mask_ratio": 1.5}))
    with pytest.raises(RecipeError, match="data.mask_ratio"):
        load_recipe(path)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: t\nmodel: {preset: [\n")
    with pytest.raises(RecipeError, match=r"bad.yaml:\d+: not valid YAML"):
        load_recipe(bad)


def test_default_corpus_is_local_when_present_else_hub(tmp_path):
    recipe = load_recipe(_write(tmp_path, _minimal()))
    for folder in ("corpus/wikipedia_en_2015", "corpus/gutenberg_nltk"):
        (tmp_path / "root" / folder).mkdir(parents=True)
    assert corpus_sources(recipe, tmp_path / "root") == [
        str(tmp_path / "root" / "corpus/wikipedia_en_2015"), str(tmp_path / "root" / "corpus/gutenberg_nltk")]
    assert corpus_sources(recipe, None) == ["wikimedia/wikipedia"]


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("training.max_steps=abc", "'training.max_steps'='abc'; allowed: int"),
        ("training.seed=abc", "'training.seed'='abc'; allowed: int"),
        ("training.learning_rate=abc", "'training.learning_rate'='abc'; allowed: float"),
        ("training.max_steps=2.5", "'training.max_steps'=2.5; allowed: int"),
        ("training.disable_tqdm=maybe", "'training.disable_tqdm'='maybe'; allowed: bool or None"),
        ("training.lr_scheduler_type=5", "'training.lr_scheduler_type'=5; allowed: one of ['linear', "),
    ],
)
def test_training_values_are_checked_against_training_arguments_types(tmp_path, assignment, message):
    path = _write(tmp_path, _minimal())
    with pytest.raises(RecipeError) as err:
        load_recipe(path, [assignment])
    assert str(err.value).startswith(f"{path}: {message}")


def test_training_values_of_the_right_type_pass(tmp_path):
    path = _write(tmp_path, _minimal())
    recipe = load_recipe(path, ["training.learning_rate=1", "training.lr_scheduler_type=cosine",
                                "training.report_to=[none]", "training.save_total_limit=null",
                                "training.include_num_input_tokens_seen=true"])
    assert recipe.training["learning_rate"] == 1  # an int where a float is expected
    assert recipe.training["lr_scheduler_type"] == "cosine"


def test_training_value_error_from_the_file_names_its_line(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("source: t\nmodel: {preset: bert-tiny}\ntraining:\n  max_steps: 5\n  learning_rate: fast\n")
    with pytest.raises(RecipeError, match=r"x\.yaml:5: 'training.learning_rate'='fast'; allowed: float$"):
        load_recipe(path)
    # a --set value has no line in the file
    with pytest.raises(RecipeError, match=r"x\.yaml: 'training.learning_rate'='slow'"):
        load_recipe(path, ["training.learning_rate=slow"])


def test_duplicate_key_names_file_and_both_lines(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("source: t\nmodel: {preset: bert-tiny}\ntraining:\n  max_steps: 5\n  max_steps: 6\n")
    with pytest.raises(RecipeError, match=r"x\.yaml:5: duplicate key 'training.max_steps' \(first on line 4\)"):
        load_recipe(path)
    path.write_text("source: t\nsource: u\nmodel: {preset: bert-tiny}\n")
    with pytest.raises(RecipeError, match=r"x\.yaml:2: duplicate key 'source' \(first on line 1\)"):
        load_recipe(path)
    # the same name in two sections, or a key overriding a YAML merge, is not a duplicate
    path.write_text("source: t\nmodel: {preset: bert-tiny}\ndata: {cache_dir: a}\n"
                    "training: &base {seed: 1}\ndistill: {<<: *base, cache_dir: b, teacher: x}\n")
    with pytest.raises(RecipeError, match="unknown key 'distill.seed'"):
        load_recipe(path, kind="distill")
