"""`leanbert finetune`, `leanbert glue` and `leanbert report`: argument parsing over the library functions.

* ``finetune`` -> :func:`leanbert.train.finetune.finetune` (one task, one seed)
* ``glue`` -> :func:`leanbert.train.glue_runner.run_glue` (tasks x seeds, medians, skips reported)
* ``report`` -> :func:`leanbert.report.write_report` (Markdown + PNG plots of a run folder)
"""

from __future__ import annotations

import argparse
import json

from leanbert.allocator import add_allocator_option


def _add_data_and_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="a leanbert pretraining output folder, any BERT-family checkpoint folder, or a hub name")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder or hub name (default: the model's)")
    p.add_argument("--data-dir", default=None,
                   help="folder of <task>/{train,validation}.jsonl or GLUE TSV folders, or a data root with glue/ "
                        "(default: $LEANBERT_DATA or ../shared/data when present, else the Hugging Face hub)")
    p.add_argument("--output-dir", default=None)


def _add_setting_overrides(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("overrides of the protocol's settings (the same for every task)")
    g.add_argument("--max-train-samples", type=int, default=None, help="first N training rows only (CPU speed)")
    g.add_argument("--max-eval-samples", type=int, default=None, help="first N rows of each validation split")
    g.add_argument("--max-seq-length", type=int, default=None)
    g.add_argument("--epochs", type=float, default=None)
    g.add_argument("--lr", dest="learning_rate", type=float, default=None)
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--warmup-ratio", type=float, default=None)
    g.add_argument("--weight-decay", type=float, default=None)
    g.add_argument("--no-group-by-length", dest="group_by_length", action="store_const", const=False, default=None,
                   help="random batches instead of length-grouped ones")
    g.add_argument("--save-predictions", action="store_true", help="write predictions_<split>.<format> per run")
    g.add_argument("--predictions-format", choices=["jsonl", "tsv"], default="jsonl")
    g.add_argument("--save-model", action="store_true", help="keep the fine-tuned model of each run in model/")


def _overrides(args: argparse.Namespace) -> dict:
    keys = ("max_train_samples", "max_eval_samples", "max_seq_length", "epochs", "learning_rate", "batch_size",
            "warmup_ratio", "weight_decay", "group_by_length")
    return {key: getattr(args, key) for key in keys}


def _finetune(args: argparse.Namespace) -> None:
    from leanbert.train.finetune import finetune

    result = finetune(
        args.model, args.task, data_dir=args.data_dir, output_dir=args.output_dir, protocol=args.protocol,
        seed=args.seed, tokenizer=args.tokenizer, save_predictions=args.save_predictions,
        predictions_format=args.predictions_format, save_model=args.save_model, log=print, **_overrides(args),
    )
    metrics = ", ".join(f"{name} {value:.4f}" for name, value in result["metrics"].items())
    print(f"{result['task']} (seed {result['seed']}): {metrics}; results in {result['output_dir']}/results.json")
    if args.json:
        print(json.dumps(result))


def _glue(args: argparse.Namespace) -> None:
    from leanbert.train.glue_runner import RESULTS_MARKDOWN, glue_results_markdown, run_glue

    results = run_glue(
        args.model, args.tasks, args.data_dir, args.protocol, args.seeds, args.output_dir,
        first_seed=args.first_seed, tokenizer=args.tokenizer, save_predictions=args.save_predictions,
        predictions_format=args.predictions_format, save_model=args.save_model, log=print, **_overrides(args),
    )
    print()
    print(glue_results_markdown(results))
    print(f"results: {results['output_dir']}/glue_results.json and {RESULTS_MARKDOWN}")


def _report(args: argparse.Namespace) -> None:
    from leanbert.report import write_report

    print(f"report: {write_report(args.run_dir, args.out)}")


def add_commands(subparsers) -> None:
    """Add the ``finetune``, ``glue`` and ``report`` subcommands; each sets ``func(args)``."""
    from leanbert.data.glue import GLUE_TASKS
    from leanbert.train.glue_protocols import PROTOCOL_SOURCES

    protocols = "; ".join(f"{name}: {source}" for name, source in PROTOCOL_SOURCES.items())

    p = subparsers.add_parser("finetune", help="fine-tune and score one GLUE task (transformers Trainer)")
    _add_data_and_model(p)
    p.add_argument("--task", required=True, choices=list(GLUE_TASKS))
    p.add_argument("--protocol", choices=["run_glue", "glue_sane"], default="run_glue", help=protocols)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    _add_setting_overrides(p)
    add_allocator_option(p)
    p.set_defaults(func=_finetune)

    p = subparsers.add_parser("glue", help="fine-tune and score GLUE tasks over seeds; medians, skips reported")
    _add_data_and_model(p)
    p.add_argument("--tasks", default="all", help=f"comma-separated, or 'all' ({','.join(GLUE_TASKS)})")
    p.add_argument("--protocol", choices=["glue_sane", "run_glue"], default="glue_sane", help=protocols)
    p.add_argument("--seeds", type=int, default=None, help="seeds per task (default: glue_sane 5, run_glue 1)")
    p.add_argument("--first-seed", type=int, default=42)
    _add_setting_overrides(p)
    add_allocator_option(p)
    p.set_defaults(func=_glue)

    p = subparsers.add_parser("report", help="Markdown + PNG report of a run: training curves, GLUE vs the seeds")
    p.add_argument("run_dir")
    p.add_argument("--out", default=None, help="report folder (default: RUN_DIR/report)")
    p.set_defaults(func=_report)
