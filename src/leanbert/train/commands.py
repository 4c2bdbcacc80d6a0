"""`leanbert pretrain` and `leanbert distill`: the command-line layer over `pretrain` and `distill`.

    leanbert pretrain RECIPE.yaml [--set key.path=value ...] [--resume] [--data-dir D] [--output-dir O]
    leanbert distill  RECIPE.yaml [same options]

Both run unchanged under `torchrun --nproc_per_node=N -m leanbert.cli pretrain ...`.
Exit codes: 0 done, 2 bad input (nothing was trained or written), 3 stopped on a NaN/inf loss.
"""

from __future__ import annotations

import argparse
import json
import sys

from leanbert.allocator import add_allocator_option


def add_commands(subparsers) -> None:
    for name, help_text, func in (
        ("pretrain", "MLM pretraining from a YAML recipe (HF Trainer; torchrun for DDP)", _pretrain),
        ("distill", "knowledge distillation from a teacher, from a YAML recipe", _distill),
    ):
        p = subparsers.add_parser(name, help=help_text)
        add_recipe_arguments(p, "YAML recipe (see recipes/)", "continue from the last checkpoint in the output folder")
        p.set_defaults(func=func)


def add_recipe_arguments(parser: argparse.ArgumentParser, recipe_help: str, resume_help: str) -> None:
    """The options of every command that runs a recipe: pretrain, distill, search."""
    parser.add_argument("recipe", help=recipe_help)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a recipe key with a YAML-typed value; repeatable")
    parser.add_argument("--resume", action="store_true", help=resume_help)
    parser.add_argument("--data-dir", default=None, help="folder with corpus/ and tokenizers/ (default: ../shared/data)")
    parser.add_argument("--output-dir", default=None, help="overrides the recipe's output_dir")
    add_allocator_option(parser)


def _pretrain(args: argparse.Namespace) -> None:
    from leanbert.train.pretrain import run_pretraining
    from leanbert.train.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides, kind="pretrain")
    _report(lambda: run_pretraining(recipe, data_dir=args.data_dir, output_dir=args.output_dir, resume=args.resume))


def _distill(args: argparse.Namespace) -> None:
    from leanbert.train.distill import run_distillation
    from leanbert.train.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides, kind="distill")
    _report(lambda: run_distillation(recipe, data_dir=args.data_dir, output_dir=args.output_dir, resume=args.resume))


def _report(run) -> None:
    from leanbert.train.nan_guard import NonFiniteLossError

    try:
        metrics = run()
    except NonFiniteLossError as err:
        print(f"leanbert: stopped: {err}", file=sys.stderr)
        sys.exit(3)
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        print(json.dumps(metrics, indent=2, default=str))
