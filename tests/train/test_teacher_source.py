"""A distillation teacher that cannot be found fails with one error naming the recipe and the teacher."""

import pytest

from leanbert.train.distill import load_teacher
from leanbert.train.recipe import RecipeError


def test_a_missing_teacher_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RecipeError, match=r"r\.yaml: distill\.teacher .*nope: cannot load its config"):
        load_teacher(str(tmp_path / "nope"), "auto", "r.yaml")
