"""A search's output folder: what it was started with, what it has measured, and how it resumes.

    search_inputs.json     the recipe (without the choice's knobs) and the data root: what every candidate
                           must share; `--resume` refuses a search started with other inputs
    search_recipe.yaml     the resolved recipe, for reading (rewritten when only the choice's knobs change)
    costs.json             p and i of each candidate, against T
    candidates/<name>/     each proxy run's folder; `proxy_result.json` in it once the run has ended
    search.json, search.md, pareto.png

The choice's knobs (`error_tolerance`, `params_weight`, `time_weight`) touch no measurement, so a search
resumed with new values only re-summarises. JSON files hold null, never NaN, for a diverged run's loss, so
that strict parsers read them; `read_proxy_result` turns null losses back into NaN. Every file is written atomically.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

from leanbert.atomic_io import atomic_write_json, atomic_write_text
from leanbert.train.recipe import Recipe, dump_recipe

INPUTS_FILE = "search_inputs.json"
SEARCH_RECIPE = "search_recipe.yaml"
COSTS_FILE = "costs.json"
RESULT_FILE = "search.json"
CANDIDATES_DIR = "candidates"
PROXY_RESULT = "proxy_result.json"  # in a candidate's folder, once its proxy run has ended
CHOICE_KNOBS = ("error_tolerance", "params_weight", "time_weight")
LOSS_KEYS = ("eval_loss", "eval_perplexity")


def shared_inputs(recipe: Recipe, data_root: Path | None) -> dict:
    """What every candidate's measurements depend on: the recipe without the choice's knobs, and the data root
    when the recipe leaves its corpus or tokenizer to it."""
    tree = copy.deepcopy(recipe.tree)
    for knob in CHOICE_KNOBS:
        tree.get("search", {}).pop(knob, None)
    uses_root = data_root is not None and (recipe.data.corpus is None or recipe.data.tokenizer is None)
    return {"recipe": tree, "data_root": str(data_root.resolve()) if uses_root else None}


def check_folder(out: Path, inputs: dict, resume: bool, recipe_path: Path) -> None:
    """A new search needs a folder without any search's files; `--resume` needs one started with the same inputs."""
    recorded = out / INPUTS_FILE
    leftovers = [name for name in (INPUTS_FILE, SEARCH_RECIPE, COSTS_FILE, RESULT_FILE, CANDIDATES_DIR)
                 if (out / name).exists()]
    if not resume:
        if leftovers:  # their costs and proxy results would be read back as this search's own
            raise ValueError(f"{out} already holds a search ({', '.join(leftovers)}); pass --resume to continue it "
                             "or choose another --output-dir")
        return
    if not recorded.is_file():
        if leftovers:
            raise ValueError(f"--resume: {out} holds a search's files ({', '.join(leftovers)}) but not {INPUTS_FILE}, "
                             "so what it was started with is unknown; choose another --output-dir")
        raise ValueError(f"--resume: {out} holds no search; start without --resume")
    before = json.loads(recorded.read_text(encoding="utf-8"))
    if before["data_root"] != inputs["data_root"]:
        raise ValueError(f"--resume: this search read its data from {before['data_root']}, not {inputs['data_root']}; "
                         "give the same --data-dir")
    # compared with the keys in order: the order of search.space names the candidates and breaks ties
    if json.dumps(before["recipe"]) != json.dumps(inputs["recipe"]):
        raise ValueError(f"--resume: {recipe_path} differs from the recipe this search started with "
                         f"({out / SEARCH_RECIPE}) beyond the choice's knobs ({', '.join(CHOICE_KNOBS)}); a search's "
                         "candidates must share one recipe: choose another --output-dir")


def record_inputs(out: Path, inputs: dict, recipe: Recipe) -> None:
    atomic_write_text(out / SEARCH_RECIPE, dump_recipe(recipe))
    atomic_write_json(out / INPUTS_FILE, inputs)


def json_safe(value):
    """value with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value


def write_json(path: Path, value) -> None:
    atomic_write_json(path, json_safe(value))


def read_proxy_result(path: Path) -> dict:
    """A proxy result, with null losses read back as NaN."""
    value = json.loads(path.read_text(encoding="utf-8"))
    return {key: math.nan if key in LOSS_KEYS and item is None else item for key, item in value.items()}
