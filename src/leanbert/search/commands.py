"""`leanbert search`: the command-line layer over `search.extract`.

    leanbert search RECIPE.yaml [--set key.path=value ...] [--resume] [--data-dir D] [--output-dir O]

Exit codes: 0 done, 2 bad input (nothing was trained or written).
"""

from __future__ import annotations

import argparse

from leanbert.allocator import add_allocator_option


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("search", help="optimal subarchitecture extraction (Bort): a Pareto report "
                                             "over parameters, inference time and proxy-trained loss")
    p.add_argument("recipe", help="YAML search recipe (see recipes/bort-search.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a recipe key with a YAML-typed value; repeatable")
    p.add_argument("--resume", action="store_true", help="continue an interrupted search in the output folder")
    p.add_argument("--data-dir", default=None, help="folder with corpus/ and tokenizers/ (default: ../shared/data)")
    p.add_argument("--output-dir", default=None, help="overrides the recipe's output_dir")
    add_allocator_option(p)
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
