"""Ξ from `search.space`: the product of the axes, named candidates, refused combinations, checked keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from leanbert.config import LeanBertConfig
from leanbert.search.space import candidate_name, enumerate_candidates
from leanbert.train.recipe import RecipeError, load_recipe
from tiny_run import write_recipe


def _build(fields):
    return LeanBertConfig(**{"hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128, **fields})


def test_the_product_of_the_axes_minus_what_the_config_refuses():
    space = {"hidden_size": [48, 64], "num_attention_heads": [4, 5], "num_hidden_layers": [1, 2]}
    candidates, refused = enumerate_candidates(space, _build)
    assert [c.name for c in candidates] == ["L1-A4-H48", "L2-A4-H48", "L1-A4-H64", "L2-A4-H64"]
    assert [r["name"] for r in refused] == ["L1-A5-H48", "L2-A5-H48", "L1-A5-H64", "L2-A5-H64"]
    assert all("not divisible by num_attention_heads=5" in r["reason"] for r in refused)
    assert candidates[0].overrides == {"hidden_size": 48, "num_attention_heads": 4, "num_hidden_layers": 1}


def test_an_axis_of_one_value_is_left_out_of_the_names():
    candidates, _ = enumerate_candidates({"num_hidden_layers": [1, 2], "ffn_type": ["fff"], "fff_depth": [3]}, _build)
    assert [c.name for c in candidates] == ["L1", "L2"]
    assert candidates[0].overrides == {"num_hidden_layers": 1, "ffn_type": "fff", "fff_depth": 3}
    candidates, _ = enumerate_candidates({"num_hidden_layers": [2]}, _build)
    assert [c.name for c in candidates] == ["L2"]


def test_two_names_for_one_model_are_trained_once():
    space = {"ffn_type": ["dense", "fff"], "intermediate_size": [64, 96], "fff_depth": [3]}
    candidates, refused = enumerate_candidates(space, _build)
    assert [c.name for c in candidates] == ["I64-ffn_type=dense", "I96-ffn_type=dense", "I64-ffn_type=fff"]
    assert refused == [{"name": "I96-ffn_type=fff", "fields": {"ffn_type": "fff", "intermediate_size": 96,
                                                               "fff_depth": 3},
                        "reason": "the same model as I64-ffn_type=fff (intermediate_size: not read by its components)"}]


def test_names_put_borts_axes_first_and_any_other_field_after():
    assert candidate_name({"intermediate_size": 768, "num_hidden_layers": 4, "num_attention_heads": 8,
                           "hidden_size": 1024}) == "L4-A8-H1024-I768"
    assert candidate_name({"ffn_type": "fff", "hidden_size": 64, "fff_depth": 3}) == "H64-ffn_type=fff-fff_depth=3"


def _search_recipe(tmp_path, **search):
    return write_recipe(tmp_path, search={"space": {"num_hidden_layers": [1, 2]}, **search})


def test_a_search_recipe_is_read_with_its_section(tmp_path):
    recipe = load_recipe(_search_recipe(tmp_path, error_tolerance=0.05), kind="search")
    assert recipe.search.space == {"num_hidden_layers": [1, 2]} and recipe.search.error_tolerance == 0.05
    assert recipe.distill is None


@pytest.mark.parametrize("search, message", [
    ({"space": {"num_hiden_layers": [1, 2]}}, "unknown key 'search.space.num_hiden_layers' (not a LeanBertConfig "
                                              "field); did you mean 'num_hidden_layers'?"),
    ({"space": {"hidden_size": []}}, "'search.space.hidden_size'=[]; allowed: a non-empty list"),
    ({"space": {"hidden_size": 64}}, "'search.space'"),
    ({"space": {"hidden_size": [64, 64]}}, "'search.space.hidden_size' lists a value twice"),
    ({"space": {}}, "'search.space' is required"),
    ({"space": {"hidden_size": [64]}, "error_tolerance": -0.1}, "'search.error_tolerance'=-0.1; allowed: a finite number >= 0"),
    ({"space": {"hidden_size": [64]}, "speed_repeats": 0}, "'search.speed_repeats'=0; allowed: >= 1"),
    ({"space": {"hidden_size": [64]}, "spead_repeats": 3}, "unknown key 'search.spead_repeats'; did you mean"),
])
def test_bad_search_sections_name_the_key(tmp_path, search, message):
    path = write_recipe(tmp_path, search=search)
    with pytest.raises(RecipeError, match="^" + str(path)) as err:
        load_recipe(path, kind="search")
    assert message in str(err.value)


def test_the_search_section_belongs_to_search_recipes_only(tmp_path):
    with pytest.raises(RecipeError, match="unknown key 'search'"):
        load_recipe(_search_recipe(tmp_path), kind="pretrain")
    with pytest.raises(RecipeError, match="a search recipe needs a 'search' section"):
        load_recipe(write_recipe(tmp_path, name="plain.yaml"), kind="search")


def test_the_shipped_search_recipe_spans_borts_four_axes():
    from leanbert.search.extract import candidate_config

    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "bort-search.yaml", kind="search")
    candidates, refused = enumerate_candidates(recipe.search.space,
                                               lambda fields: candidate_config(recipe, fields))
    assert len(candidates) == 16 and not refused
    assert candidates[0].name == "L2-A4-H128-I256" and candidates[-1].name == "L4-A8-H256-I1024"
