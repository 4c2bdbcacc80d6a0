"""`leanbert search`: the command-line layer over `search.extract`.

    leanbert search RECIPE.yaml [--set key.path=value ...] [--resume] [--data-dir D] [--output-dir O]

Exit codes: 0 done, 2 bad input (nothing was trained or written).
"""

from __future__ import annotations

import argparse

from leanbert.train.commands import add_recipe_arguments


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("search", help="optimal subarchitecture extraction (Bort): a Pareto report "
                                             "over parameters, inference time and proxy-trained loss")
    add_recipe_arguments(p, "YAML search recipe (see recipes/bort-search.yaml)",
                         "continue an interrupted search in the output folder, or re-choose with new knobs")
    p.set_defaults(func=_search)


def _search(args: argparse.Namespace) -> None:
    from leanbert.search.extract import run_search
    from leanbert.search.report import REPORT_FILE
    from leanbert.train.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides, kind="search")
    result = run_search(recipe, data_dir=args.data_dir, output_dir=args.output_dir, resume=args.resume)
    out = args.output_dir or recipe.output_dir
    if result["chosen"] is None:
        print("every proxy run diverged: no architecture chosen (lower training.learning_rate); "
              f"report: {out}/{REPORT_FILE}")
    else:
        print(f"chosen: {result['chosen']} (T = {result['reference']}); report: {out}/{REPORT_FILE}")
