"""quality_nano: pretrain bert-hash-nano on a CPU budget, then GLUE-sane sst2, mrpc, cola, stsb.

Writes benchmarks/results/<name>.{json,md} (atomically) with the wall-clock time of each stage,
the held-out MLM loss, the GLUE medians and whether the goals (SST-2 >= 0.813, MRPC F1 >= 0.817,
all within 2 hours) were met. Resumable: rerunning continues an interrupted pretraining.

    python benchmarks/quality_nano/run.py [--recipe R] [--data-dir D] [--out DIR] [--max-steps N]

recipe.yaml pretrains with MLM only; recipe_kd.yaml (`--recipe recipe_kd.yaml`) distils
all-MiniLM-L6-v2 into the same student (needs `pip install 'leanbert[teacher]'`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
GOALS = {"sst2": ("accuracy", 0.813), "mrpc": ("f1", 0.817)}
BUDGET_SECONDS = 2 * 3600


def main() -> None:
    import leanbert  # noqa: F401
    from transformers.trainer_utils import get_last_checkpoint

    from leanbert.bench.results import write_results
    from leanbert.train.glue_runner import run_glue
    from leanbert.train.distill import run_distillation
    from leanbert.train.pretrain import run_pretraining
    from leanbert.train.recipe import load_recipe

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--recipe", default="recipe.yaml", help="a recipe file in benchmarks/quality_nano/")
    parser.add_argument("--out", default=None, help="run folder (default: runs/<recipe's output_dir name>)")
    parser.add_argument("--max-steps", type=int, default=None, help="override the pretraining budget")
    parser.add_argument("--results", default=str(HERE.parent / "results"))
    args = parser.parse_args()

    overrides = [f"training.max_steps={args.max_steps}"] if args.max_steps else []
    recipe_path = HERE / args.recipe
    kind = "distill" if "distill" in (yaml.safe_load(recipe_path.read_text(encoding="utf-8")) or {}) else "pretrain"
    recipe = load_recipe(recipe_path, overrides, kind=kind)
    run = run_distillation if kind == "distill" else run_pretraining
    out = Path(args.out or recipe.output_dir)
    name = out.name
    start = time.perf_counter()
    if not (out / "final").is_dir():
        resume = out.is_dir() and get_last_checkpoint(str(out)) is not None
        pretrain_metrics = run(recipe, data_dir=args.data_dir, output_dir=str(out), resume=resume)
    else:
        import json

        pretrain_metrics = json.loads((out / "metrics.json").read_text())
    pretrain_seconds = time.perf_counter() - start
    glue_data = None if args.data_dir is None else Path(args.data_dir) / "glue"
    glue = run_glue(out, ["sst2", "mrpc", "cola", "stsb"], data_dir=glue_data, protocol="glue_sane", seeds=1,
                    epochs=3, output_dir=out / "glue", log=print)
    total = time.perf_counter() - start

    scores = {task: glue["tasks"].get(task, {}) for task in ("sst2", "mrpc", "cola", "stsb")}
    result = {
        "recipe": recipe_path.name,
        "parameters": _base_parameters(out / "final"),
        "pretrain_steps": recipe.training.get("max_steps"),
        "pretrain_seconds": pretrain_seconds,
        "total_seconds": total,
        "within_2h": total <= BUDGET_SECONDS,
        "heldout_mlm_loss": pretrain_metrics.get("eval_loss"),
        "glue": scores,
    }
    for task, (metric, goal) in GOALS.items():
        value = _median(scores.get(task, {}), metric)
        result[f"{task}_{metric}"] = value
        result[f"{task}_goal_met"] = value is not None and value >= goal
    write_results(args.results, name, result, f"{name}: bert-hash-nano on a 2-hour CPU budget ({recipe_path.name})")
    print(result)


def _base_parameters(folder: Path) -> int:
    """Parameters of the base model with its pooler, as the BERT Hash seed counts them."""
    from leanbert.modeling.model import LeanBertModel

    return sum(p.numel() for p in LeanBertModel.from_pretrained(folder).parameters())


def _median(task_result: dict, metric: str):
    entry = (task_result.get("metrics") or {}).get(metric)
    if isinstance(entry, dict):
        return entry.get("median")
    return entry


if __name__ == "__main__":
    main()
