"""`make demo`: the main job, end to end on this machine in about 20 minutes.

1. pretrain bert-hash-nano (969,504 parameters) with MLM on the local corpus (Wikipedia 2015 +
   Gutenberg: `--data-dir`, else $LEANBERT_DATA, else ../shared/data, else hub datasets);
2. fine-tune and evaluate it GLUE-sane on SST-2 and MRPC (training rows capped so the whole job
   fits the budget; the caps are printed and recorded in the results);
3. write the Markdown report with plots, and print where it is.

Every step shows a progress bar. The numbers are a CPU-minutes demo, not the published recipe:
`leanbert pretrain recipes/bert-hash-nano.yaml` and `benchmarks/quality_nano` are the full runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "bert-hash-nano.yaml"

# Budget (measured on 2 cores): ~0.7 s per pretraining step of 64 x 128 tokens; GLUE-sane
# fine-tuning of nano at ~1,500 rows/s. Changing these changes the demo's run time linearly.
DEMO_PRETRAIN = ["training.max_steps=900", "training.warmup_steps=90", "training.save_steps=300",
                 "training.logging_steps=25", "data.max_eval_blocks=256"]
DEMO_GLUE = dict(tasks=["sst2", "mrpc"], protocol="glue_sane", seeds=1, epochs=3, max_train_samples=20000)


def run_demo(args: argparse.Namespace) -> None:
    from leanbert.report import write_report
    from leanbert.train.finetune import resolve_glue_dir
    from leanbert.train.glue_runner import run_glue
    from leanbert.train.pretrain import run_pretraining
    from leanbert.train.recipe import load_recipe

    from transformers.trainer_utils import get_last_checkpoint

    out = Path(args.out)
    # the GLUE folder is checked before the pretraining, not found missing ten minutes later
    glue_dir = resolve_glue_dir(None if args.data_dir is None else Path(args.data_dir) / "glue")
    print(f"[1/3] pretraining bert-hash-nano on the local corpus -> {out}")
    recipe = load_recipe(RECIPE, DEMO_PRETRAIN, kind="pretrain")
    interrupted = out.is_dir() and get_last_checkpoint(str(out)) is not None
    if (out / "final").is_dir() and (out / "metrics.json").is_file():
        print("      already pretrained (delete the folder to start again)")
    else:  # an interrupted demo resumes where it stopped, to the same result
        metrics = run_pretraining(recipe, data_dir=args.data_dir, output_dir=str(out), resume=interrupted)
        print(f"      held-out MLM loss {metrics.get('eval_loss', float('nan')):.3f}, "
              f"perplexity {metrics.get('eval_perplexity', float('nan')):.1f}")
    print("[2/3] GLUE-sane fine-tuning on sst2 and mrpc")
    settings = dict(DEMO_GLUE)
    run_glue(out, settings.pop("tasks"), data_dir=glue_dir, output_dir=out / "glue", log=print, **settings)
    print("[3/3] writing the report")
    report = write_report(out)
    print(f"\nreport: {report.resolve()}")
