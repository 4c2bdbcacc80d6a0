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

Everything a proxy run would refuse (corpus, tokenizer, training arguments, teacher) is checked for every
candidate before anything is written. `--resume` continues an interrupted search (`run_folder`): measured
costs are kept, finished proxy runs are read back, and an interrupted one resumes from its last checkpoint
(exactly, as `leanbert pretrain --resume` does), so the result is the one an uninterrupted search gives, up
to the timing noise of costs not yet measured. Resuming with other choice knobs only re-summarises.

Cost: |Ξ| proxy runs of `training.max_steps` steps each, plus 2 x speed_repeats forwards per candidate.
The search runs in one process; each proxy run uses every core the Trainer is given.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
from pathlib import Path

import torch

from leanbert.bench import host
from leanbert.search import run_folder
from leanbert.search.costs import parameter_counts, time_against_reference
from leanbert.search.frontier import choose, pareto_front, relative_cost, within_tolerance
from leanbert.search.run_folder import CANDIDATES_DIR, COSTS_FILE, PROXY_RESULT, RESULT_FILE
from leanbert.search.space import Candidate, enumerate_candidates
from leanbert.train.recipe import Recipe, RecipeError, build_model_config, validate_recipe


def _with_fields(model: dict, fields: dict) -> dict:
    """The recipe's `model:` section with a candidate's config fields set over it."""
    key = "config" if "config" in model else "overrides"
    return {**model, key: {**(model.get(key) or {}), **fields}}


def candidate_config(recipe: Recipe, fields: dict):
    """The LeanBertConfig of the recipe's model with a candidate's fields set over it."""
    return build_model_config(dataclasses.replace(recipe, model=_with_fields(recipe.model, fields)))


def candidate_recipe(recipe: Recipe, candidate: Candidate, out: Path) -> Recipe:
    """The proxy run's recipe: the search recipe without `search:`, the candidate's fields, its own folder."""
    tree = {key: copy.deepcopy(value) for key, value in recipe.tree.items() if key != "search"}
    tree["model"] = _with_fields(tree.get("model") or {}, candidate.overrides)
    tree["output_dir"] = str(out / CANDIDATES_DIR / folder_name(candidate))
    distill = tree.get("distill") or {}
    if distill.get("cache_dir") and distill.get("hidden_layers") == "uniform":
        # the teacher layers a cache holds follow the student's depth: one cache per depth, shared by its candidates
        layers = candidate.config.num_hidden_layers
        tree["distill"] = {**distill, "cache_dir": str(Path(distill["cache_dir"]) / f"student-layers-{layers}")}
    return validate_recipe(tree, recipe.path, "distill" if recipe.distill is not None else "pretrain")


def folder_name(candidate: Candidate) -> str:
    return candidate.name.replace(os.sep, "_")


def plan_search(recipe: Recipe, out: Path, resume: bool, data_dir: str | None = None):
    """Every check, with no side effect: the recipe, Ξ, the output folder, and each candidate's proxy run.

    Returns (candidates, refused combinations, the inputs to record)."""
    from leanbert.local_data import find_data_root

    if recipe.search is None:
        raise RecipeError(f"{recipe.path}: not a search recipe (no 'search' section)")
    if recipe.data.validation_fraction <= 0:
        raise RecipeError(f"{recipe.path}: a search needs data.validation_fraction > 0: the error of each "
                          "candidate is its held-out MLM loss")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RecipeError(f"{recipe.path}: leanbert search runs in one process (its proxy runs use every core); "
                          "start it without torchrun")
    candidates, refused = enumerate_candidates(
        recipe.search.space, lambda fields: candidate_config(recipe, fields))
    prefix = f"{recipe.path}: model: "  # build_model_config's, the same for every refusal
    refused = [{**r, "reason": r["reason"].removeprefix(prefix)} for r in refused]
    _check_every_value_is_used(recipe, candidates, refused)
    inputs = run_folder.shared_inputs(recipe, find_data_root(data_dir))
    run_folder.check_folder(out, inputs, resume, recipe.path)
    length = recipe.search.speed_length or recipe.data.block_size
    length_key = "search.speed_length" if recipe.search.speed_length else "data.block_size"
    for candidate in candidates:
        positions = candidate.config.max_position_embeddings
        if length > positions:
            raise RecipeError(f"{recipe.path}: {length_key}={length} exceeds max_position_embeddings="
                              f"{positions} of candidate {candidate.name}")
    _check_proxy_runs(recipe, candidates, out, data_dir)
    return candidates, refused, inputs


def _check_every_value_is_used(recipe: Recipe, candidates: list[Candidate], refused: list[dict]) -> None:
    """A value refused in every combination is a mistake in the recipe (`ffn_type: fast`), not a combination."""
    if not candidates:
        reasons = "; ".join(f"{r['name']}: {r['reason']}" for r in refused[:3])
        raise RecipeError(f"{recipe.path}: search.space gives no valid architecture ({reasons})")
    for key, values in recipe.search.space.items():
        for value in values:
            if not any(repr(c.overrides[key]) == repr(value) for c in candidates):
                reason = next(r["reason"] for r in refused if repr(r["fields"][key]) == repr(value))
                raise RecipeError(f"{recipe.path}: 'search.space.{key}' value {value!r} is refused in every "
                                  f"combination: {reason}")


def _check_proxy_runs(recipe: Recipe, candidates: list[Candidate], out: Path, data_dir: str | None) -> None:
    """What each proxy run would check before training (`pretrain.plan_run`, the teacher), for every candidate
    still to train; and the data they share, prepared once (`load_blocks`: cached by `datasets` for the runs)."""
    from leanbert.train.pretrain import load_blocks, plan_run

    teacher, blocks_ready = None, False
    for candidate in candidates:
        run = candidate_recipe(recipe, candidate, out)
        folder = Path(run.output_dir)
        if (folder / PROXY_RESULT).is_file() or _finished(folder):
            continue
        try:
            plan = plan_run(run, data_dir=data_dir, resume=_has_checkpoint(folder))
            if recipe.distill is not None:
                from leanbert.train.distill import check_teacher_fits, load_teacher

                teacher = teacher or load_teacher(recipe.distill.teacher, recipe.distill.mode, str(recipe.path))
                check_teacher_fits(*teacher, plan.tokenizer, plan.config, run)
            if not blocks_ready:
                load_blocks(plan)
                blocks_ready = True
        except (ValueError, OSError) as err:
            raise RecipeError(f"candidate {candidate.name}: {err}") from None


def _has_checkpoint(folder: Path) -> bool:
    """An interrupted proxy run, to resume from its last checkpoint."""
    from transformers.trainer_utils import get_last_checkpoint

    return folder.is_dir() and get_last_checkpoint(str(folder)) is not None


def _finished(folder: Path) -> bool:
    """A proxy run that ended but was stopped before its result was noted."""
    return (folder / "metrics.json").is_file() and (folder / "final").is_dir()


def reference_of(candidates: list[Candidate]) -> tuple[Candidate, dict[str, dict]]:
    """T, the candidate with most parameters (the first of equals), and every candidate's counts."""
    counts = {c.name: parameter_counts(c.config) for c in candidates}
    return max(candidates, key=lambda c: counts[c.name]["params"]), counts


def measure_costs(recipe: Recipe, candidates: list[Candidate], out: Path) -> dict:
    """p and i of every candidate, from `costs.json` where already measured; saved after each one."""
    path = out / COSTS_FILE
    reference, counts = reference_of(candidates)
    if path.is_file():
        costs = json.loads(path.read_text(encoding="utf-8"))
    else:  # times are ratios, but a ratio still depends on the machine's caches and cores
        costs = {"host": host.describe(), "threads": torch.get_num_threads()}
    if costs.get("reference") not in (None, reference.name):
        raise ValueError(f"{path}: measured against {costs['reference']}, but T is now {reference.name}")
    costs["reference"] = reference.name
    section = recipe.search
    length = section.speed_length or recipe.data.block_size
    rows = costs.setdefault("candidates", {})
    for index, candidate in enumerate(candidates, 1):
        if candidate.name in rows:
            continue
        print(f"[search] timing {index}/{len(candidates)} {candidate.name} against T = {reference.name}",
              file=sys.stderr)
        timing = time_against_reference(candidate.config, reference.config,
                                         section.speed_batch_size, length, section.speed_repeats)
        if candidate == reference:
            timing["time_ratio"] = 1.0  # by definition; two copies of T differ only by the timing noise
        rows[candidate.name] = {**counts[candidate.name], **timing}
        run_folder.write_json(path, costs)
    return costs


def proxy_error(recipe: Recipe, candidate: Candidate, out: Path, data_dir: str | None) -> dict:
    """Run (or resume, or read back) the candidate's proxy training; its held-out loss is e."""
    from leanbert.train.nan_guard import NonFiniteLossError

    run = candidate_recipe(recipe, candidate, out)
    folder = Path(run.output_dir)
    done = folder / PROXY_RESULT
    if done.is_file():
        return run_folder.read_proxy_result(done)
    if _finished(folder):
        result = _proxy_result(json.loads((folder / "metrics.json").read_text(encoding="utf-8")))
    else:
        if recipe.distill is not None:
            from leanbert.train.distill import run_distillation as train
        else:
            from leanbert.train.pretrain import run_pretraining as train
        try:
            result = _proxy_result(train(run, data_dir=data_dir, resume=_has_checkpoint(folder)))
        except NonFiniteLossError as err:  # a diverged candidate is a result, not a failed search
            result = {"status": "diverged", "eval_loss": math.nan, "eval_perplexity": math.nan,
                      "message": str(err).split("; ")[0]}
    run_folder.write_json(done, result)
    return result


def _proxy_result(metrics: dict) -> dict:
    loss = metrics["eval_loss"]
    return {"status": "done" if math.isfinite(loss) else "diverged", "eval_loss": loss,
            "eval_perplexity": metrics["eval_perplexity"], "global_step": metrics["global_step"],
            "train_runtime": metrics.get("train_runtime")}


def run_search(recipe: Recipe, *, data_dir: str | None = None, output_dir: str | None = None,
               resume: bool = False) -> dict:
    """Search the recipe's space; returns the result written to `search.json` (null for a diverged loss)."""
    from leanbert.search.report import write_report

    out = Path(output_dir or recipe.output_dir)
    candidates, refused, inputs = plan_search(recipe, out, resume, data_dir)
    run_folder.record_inputs(out, inputs, recipe)
    costs = measure_costs(recipe, candidates, out)
    errors = {}
    for index, candidate in enumerate(candidates, 1):
        print(f"[search] proxy run {index}/{len(candidates)}: {candidate.name}", file=sys.stderr)
        errors[candidate.name] = proxy_error(recipe, candidate, out, data_dir)
    result = run_folder.json_safe(summarise(recipe, candidates, refused, costs, errors, out))
    run_folder.write_json(out / RESULT_FILE, result)
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
    chosen = choose([r["cost"] for r in rows], [r["eval_loss"] for r in rows], section.error_tolerance, front)
    eligible = within_tolerance([r["eval_loss"] for r in rows], section.error_tolerance)
    for row, on_front, ok in zip(rows, front, eligible):
        row["on_front"], row["eligible"] = on_front, ok
    return {
        "recipe": str(recipe.path),
        "reference": reference,
        "error_tolerance": section.error_tolerance,
        "params_weight": section.params_weight,
        "time_weight": section.time_weight,
        "speed_batch": [section.speed_batch_size, section.speed_length or recipe.data.block_size],
        "host": costs.get("host"),
        "threads": costs.get("threads"),
        "proxy_steps": recipe.training.get("max_steps"),
        "chosen": rows[chosen]["name"] if chosen is not None else None,
        "candidates": rows,
        "refused": refused,
    }
