"""Honest accuracy check for FFF at small scale (UltraFastBERT issue 12): same budget, three feed-forwards.

On the bert-hash-nano backbone (hidden 128, 2 layers), or another recipe's, pretrain with MLM for
the same number of steps, data, seed and schedule, and compare the held-out MLM loss of:

  fff            1 tree of depth D (2^(D+1)-1 neurons, D+1 used per token)
  dense-compute  a dense FF with D+1 neurons: the same per-token feed-forward compute
  dense-params   a dense FF with 2^(D+1)-1 neurons: the same feed-forward parameters

    python benchmarks/fff_accuracy.py [--depth 8] [--steps 600] [--out runs/fff_accuracy]
    python benchmarks/fff_accuracy.py --recipe recipes/bert-tiny.yaml   # same check, another backbone
    python benchmarks/fff_accuracy.py --seeds 42,1,2                    # every variant once per seed

Each seed sets the recipe's `training.seed` (initial weights, masking, batch order) for all three
variants alike, so the gaps are compared seed by seed: the record gives every run, each variant's
mean, and FFF minus each dense variant per seed. A run already finished in --out is read, not
retrained (the recipe's own seed lives in --out/<variant>, any other in --out/seed-<s>/<variant>).
Writes benchmarks/results/fff_accuracy.{json,md} (fff_accuracy_<preset> for another recipe's
preset). The numbers are reported as they come out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    import json

    from transformers.trainer_utils import get_last_checkpoint

    import leanbert  # noqa: F401
    from leanbert.allocator import keep_freed_memory
    from leanbert.bench.results import write_results
    from leanbert.train.pretrain import run_pretraining
    from leanbert.train.recipe import load_recipe

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", default=str(HERE.parent / "recipes" / "bert-hash-nano.yaml"),
                        help="pretraining recipe whose backbone the three feed-forwards share")
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", default=None, help="comma-separated training seeds (default: the recipe's)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/fff_accuracy")
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()
    keep_freed_memory()  # as `leanbert pretrain` does: ~1.3x faster steps on CPU

    neurons, used = 2 ** (args.depth + 1) - 1, args.depth + 1
    variants = {
        "fff": ["model.overrides.ffn_type=fff", f"model.overrides.fff_depth={args.depth}",
                "model.overrides.fff_trees=1"],
        "dense-compute": [f"model.overrides.intermediate_size={used}"],
        "dense-params": [f"model.overrides.intermediate_size={neurons}"],
    }
    schedule = [f"training.max_steps={args.steps}", f"training.warmup_steps={max(args.steps // 10, 1)}",
                f"training.save_steps={args.steps}", "training.logging_steps=50", "data.max_eval_blocks=512"]
    base = load_recipe(args.recipe, [], kind="pretrain")
    backbone, recipe_seed = base.model.get("preset", "custom"), base.training.get("seed", 42)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [recipe_seed]
    result = {"backbone": backbone, "depth": args.depth, "neurons": neurons, "neurons_used": used,
              "steps": args.steps,
              "batch": f"{base.training.get('per_device_train_batch_size', 8)} x {base.data.block_size} tokens",  # 8: HF's default
              "seeds": seeds,
              "runs": {name: {} for name in variants}}
    for seed in seeds:
        folder = Path(args.out) if seed == recipe_seed else Path(args.out) / f"seed-{seed}"
        for name, overrides in variants.items():
            recipe = load_recipe(args.recipe, overrides + schedule + [f"training.seed={seed}"], kind="pretrain")
            out = folder / name
            if (out / "metrics.json").is_file():  # finished earlier: rerunning only rewrites the table
                metrics = json.loads((out / "metrics.json").read_text())
            else:
                resume = out.is_dir() and get_last_checkpoint(str(out)) is not None
                metrics = run_pretraining(recipe, data_dir=args.data_dir, output_dir=str(out), resume=resume)
            run = {key: metrics.get(key) for key in ("eval_loss", "eval_perplexity", "train_loss", "train_runtime")}
            result["runs"][name][str(seed)] = run
            print(f"seed {seed}", name, run)
    result.update(_summary(result["runs"], seeds))
    name = "fff_accuracy" if backbone == "bert-hash-nano" else f"fff_accuracy_{backbone}"
    write_results(args.results, name, result, f"FFF vs dense feed-forward on {backbone}, same budget")


def _summary(runs: dict[str, dict[str, dict]], seeds: list[int]) -> dict:
    """Each variant's mean held-out loss, and FFF minus each dense variant seed by seed."""
    import statistics

    loss = {name: [by_seed[str(s)]["eval_loss"] for s in seeds] for name, by_seed in runs.items()}
    return {
        "mean_eval_loss": {name: statistics.fmean(values) for name, values in loss.items()},
        "fff_minus_dense_compute": [f - d for f, d in zip(loss["fff"], loss["dense-compute"])],
        "fff_minus_dense_params": [f - d for f, d in zip(loss["fff"], loss["dense-params"])],
    }


if __name__ == "__main__":
    main()
