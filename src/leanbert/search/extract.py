"""`leanbert search RECIPE.yaml`: optimal subarchitecture extraction, as Bort found its architecture.

Bort (seed 002; arXiv 2010.10499, 2010.08512) searched BERT's ⟨depth, heads, hidden, intermediate⟩ for the
architecture that best trades parameter size, inference speed and error against the largest one, the
error being estimated by short proxy trainings. Its search code was never released. Here:

1. Ξ from the recipe's `search.space` over its model (`space`); T is the candidate with most parameters.
2. p and i for every candidate (`costs`): exact parameter counts, and inference time measured in turns
   with T's. They are written to `costs.json` as they are measured, before any training.
3. e for every candidate: one proxy run each, the recipe's own `leanbert pretrain` run (or `leanbert
   distill`, when the recipe has a `distill:` section) with the candidate's fields, all with the same
   data, seed, masks and step budget; e is its held-out MLM loss. Each run lives in
   `candidates/<name>/`, a complete run folder (checkpoints, logs, `final/`), ready to train further.
4. The Pareto front over (p, i, e) and the choice (`frontier`), written to `search.json`, `search.md` and
   `pareto.png` (`search.report`).

`--resume` continues an interrupted search: measured costs are kept, finished proxy runs are read back,
and an interrupted one resumes from its last checkpoint (exactly, as `leanbert pretrain --resume` does),
so the result is the one an uninterrupted search gives, up to the timing noise of costs not yet measured.

Cost: |Ξ| proxy runs of `training.max_steps` steps each, plus 2 x speed_repeats forwards per candidate.
The search runs in one process; each proxy run uses every core the Trainer is given.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
from pathlib import Path

from leanbert.atomic_io import atomic_write_json, atomic_write_text
from leanbert.search.costs import parameter_counts, time_against_reference
from leanbert.search.frontier import choose, pareto_front, relative_cost
from leanbert.search.space import Candidate, enumerate_candidates
from leanbert.train.recipe import Recipe, RecipeError, build_model_config, dump_recipe, validate_recipe

SEARCH_RECIPE = "search_recipe.yaml"
COSTS_FILE = "costs.json"
RESULT_FILE = "search.json"
CANDIDATES_DIR = "candidates"
PROXY_RESULT = "proxy_result.json"  # in a candidate's folder, once its proxy run has ended


def _with_fields(model: dict, fields: dict) -> dict:
    """The recipe's `model:` section with a candidate's config fields set over it."""
    key = "config" if "config" in model else "overrides"
    return {**model, key: {**(model.get(key) or {}), **fields}}


def candidate_config(recipe: Recipe, candidate: Candidate):
    return build_model_config(dataclasses.replace(recipe, model=_with_fields(recipe.model, candidate.overrides)))


def candidate_recipe(recipe: Recipe, candidate: Candidate, out: Path) -> Recipe:
    """The proxy run's recipe: the search recipe without `search:`, the candidate's fields, its own folder."""
    tree = {key: copy.deepcopy(value) for key, value in recipe.tree.items() if key != "search"}
    tree["model"] = _with_fields(tree.get("model") or {}, candidate.overrides)
    tree["output_dir"] = str(out / CANDIDATES_DIR / folder_name(candidate))
    return validate_recipe(tree, recipe.path, "distill" if recipe.distill is not None else "pretrain")


def folder_name(candidate: Candidate) -> str:
    return candidate.name.replace(os.sep, "_")


def plan_search(recipe: Recipe, out: Path, resume: bool) -> tuple[list[Candidate], list[dict]]:
    """Checks with no side effect: the recipe, the output folder, and Ξ (at least one valid candidate)."""
    if recipe.search is None:
        raise RecipeError(f"{recipe.path}: not a search recipe (no 'search' section)")
    if recipe.data.validation_fraction <= 0:
        raise RecipeError(f"{recipe.path}: a search needs data.validation_fraction > 0: the error of each "
                          "candidate is its held-out MLM loss")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RecipeError(f"{recipe.path}: leanbert search runs in one process (its proxy runs use every core); "
                          "start it without torchrun")
    candidates, refused = enumerate_candidates(
        recipe.search.space, lambda fields: candidate_config(recipe, Candidate("", fields)))
    prefix = f"{recipe.path}: model: "  # build_model_config's, the same for every refusal
    refused = [{**r, "reason": r["reason"].removeprefix(prefix)} for r in refused]
    if not candidates:
        reasons = "; ".join(f"{r['name']}: {r['reason']}" for r in refused[:3])
        raise RecipeError(f"{recipe.path}: search.space gives no valid architecture ({reasons})")
    recorded = out / SEARCH_RECIPE
    if recorded.is_file() and not resume:
        raise ValueError(f"{out} already holds a search; pass --resume to continue it or choose another --output-dir")
    if resume:
        if not recorded.is_file():
            raise ValueError(f"--resume: {out} holds no search ({SEARCH_RECIPE} is missing); start without --resume")
        if recorded.read_text(encoding="utf-8") != dump_recipe(recipe):
            raise ValueError(f"--resume: {recipe.path} differs from the recipe this search started with ({recorded}); "
                             "a search's candidates must share one recipe: choose another --output-dir")
    length = recipe.search.speed_length or recipe.data.block_size
    for candidate in candidates:  # each proxy run's recipe, and its lengths, must be valid before anything runs
        candidate_recipe(recipe, candidate, out)
        positions = candidate_config(recipe, candidate).max_position_embeddings
        for key, value in (("data.block_size", recipe.data.block_size), ("search.speed_length", length)):
            if value > positions:
                raise RecipeError(f"{recipe.path}: {key}={value} exceeds max_position_embeddings={positions} "
                                  f"of candidate {candidate.name}")
    return candidates, refused


def reference_of(recipe: Recipe, candidates: list[Candidate]) -> tuple[Candidate, dict[str, dict]]:
    """T, the candidate with most parameters (the first of equals), and every candidate's counts."""
    counts = {c.name: parameter_counts(candidate_config(recipe, c)) for c in candidates}
    return max(candidates, key=lambda c: counts[c.name]["params"]), counts


def measure_costs(recipe: Recipe, candidates: list[Candidate], out: Path) -> dict:
    """p and i of every candidate, from `costs.json` where already measured; saved after each one."""
    import json

    path = out / COSTS_FILE
    reference, counts = reference_of(recipe, candidates)
    costs = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if costs.get("reference") not in (None, reference.name):
        raise ValueError(f"{path}: measured against {costs['reference']}, but T is now {reference.name}")
    costs["reference"] = reference.name
    section = recipe.search
    length = section.speed_length or recipe.data.block_size
    reference_config = candidate_config(recipe, reference)
    rows = costs.setdefault("candidates", {})
    for index, candidate in enumerate(candidates, 1):
        if candidate.name in rows:
            continue
        print(f"[search] timing {index}/{len(candidates)} {candidate.name} against T = {reference.name}",
              file=sys.stderr)
        timing = time_against_reference(candidate_config(recipe, candidate), reference_config,
                                         section.speed_batch_size, length, section.speed_repeats)
        if candidate == reference:
            timing["time_ratio"] = 1.0  # by definition; two copies of T differ only by the timing noise
        rows[candidate.name] = {**counts[candidate.name], **timing}
        atomic_write_json(path, costs)
    return costs


def proxy_error(recipe: Recipe, candidate: Candidate, out: Path, data_dir: str | None) -> dict:
    """Run (or resume, or read back) the candidate's proxy training; its held-out loss is e."""
    import json

    from leanbert.train.nan_guard import NonFiniteLossError

    run = candidate_recipe(recipe, candidate, out)
    folder = Path(run.output_dir)
    done = folder / PROXY_RESULT
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    finished = folder / "metrics.json"
    if finished.is_file() and (folder / "final").is_dir():  # stopped after the run, before its result was noted
        result = _proxy_result(json.loads(finished.read_text(encoding="utf-8")))
        atomic_write_json(done, result)
        return result
    if recipe.distill is not None:
        from leanbert.train.distill import run_distillation as train
    else:
        from leanbert.train.pretrain import run_pretraining as train
    from transformers.trainer_utils import get_last_checkpoint

    resume = folder.is_dir() and get_last_checkpoint(str(folder)) is not None
    try:
        result = _proxy_result(train(run, data_dir=data_dir, resume=resume))
    except NonFiniteLossError as err:  # a diverged candidate is a result, not a failed search
        result = {"status": "diverged", "eval_loss": math.nan, "eval_perplexity": math.nan, "message": str(err)}
    atomic_write_json(done, result)
    return result


def _proxy_result(metrics: dict) -> dict:
    loss = metrics["eval_loss"]
    return {"status": "done" if math.isfinite(loss) else "diverged", "eval_loss": loss,
            "eval_perplexity": metrics["eval_perplexity"], "global_step": metrics["global_step"],
            "train_runtime": metrics.get("train_runtime")}


def run_search(recipe: Recipe, *, data_dir: str | None = None, output_dir: str | None = None,
               resume: bool = False) -> dict:
    """Search the recipe's space; returns the result written to `search.json`."""
    from leanbert.search.report import write_report

    out = Path(output_dir or recipe.output_dir)
    candidates, refused = plan_search(recipe, out, resume)
    if not resume:
        atomic_write_text(out / SEARCH_RECIPE, dump_recipe(recipe))
    costs = measure_costs(recipe, candidates, out)
    errors = {}
    for index, candidate in enumerate(candidates, 1):
        print(f"[search] proxy run {index}/{len(candidates)}: {candidate.name}", file=sys.stderr)
        errors[candidate.name] = proxy_error(recipe, candidate, out, data_dir)
    result = summarise(recipe, candidates, refused, costs, errors, out)
    atomic_write_json(out / RESULT_FILE, result)
    write_report(result, out)
    return result


def summarise(recipe: Recipe, candidates: list[Candidate], refused: list[dict], costs: dict, errors: dict,
              out: Path) -> dict:
    """One row per candidate with its three costs, front membership and the choice."""
    section = recipe.search
    reference = costs["reference"]
    p_ref = costs["candidates"][reference]["params"]
    rows = []
    for candidate in candidates:
        measured, proxy = costs["candidates"][candidate.name], errors[candidate.name]
        params_ratio = measured["params"] / p_ref
        rows.append({
            "name": candidate.name,
            "fields": candidate.overrides,
            "params": measured["params"],
            "non_embedding_params": measured["non_embedding_params"],
            "params_ratio": params_ratio,
            "time_ratio": measured["time_ratio"],
            "seconds": measured["seconds"],
            "eval_loss": proxy["eval_loss"],
            "eval_perplexity": proxy["eval_perplexity"],
            "status": proxy["status"],
            "cost": relative_cost(params_ratio, measured["time_ratio"], section.params_weight, section.time_weight),
            "run": str(out / CANDIDATES_DIR / folder_name(candidate)),
        })
    front = pareto_front([(r["params"], r["time_ratio"], r["eval_loss"]) for r in rows])
    chosen = choose([r["cost"] for r in rows], [r["eval_loss"] for r in rows], section.error_tolerance)
    finite = [r["eval_loss"] for r in rows if math.isfinite(r["eval_loss"])]
    limit = (1 + section.error_tolerance) * min(finite) if finite else math.nan
    for row, on_front in zip(rows, front):
        row["on_front"] = on_front
        row["eligible"] = math.isfinite(row["eval_loss"]) and row["eval_loss"] <= limit
    return {
        "recipe": str(recipe.path),
        "reference": reference,
        "error_tolerance": section.error_tolerance,
        "params_weight": section.params_weight,
        "time_weight": section.time_weight,
        "speed_batch": [section.speed_batch_size, section.speed_length or recipe.data.block_size],
        "proxy_steps": recipe.training.get("max_steps"),
        "chosen": rows[chosen]["name"] if chosen is not None else None,
        "candidates": rows,
        "refused": refused,
    }
