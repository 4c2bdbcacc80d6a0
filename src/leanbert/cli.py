"""`leanbert ...`: the command line. Each subcommand is a thin layer over a library function."""

from __future__ import annotations

import argparse
import contextlib
import json
import pickle
import sys

from leanbert.allocator import add_allocator_option, keep_freed_memory


def _presets(args: argparse.Namespace) -> None:
    print_presets(as_json=args.json)


def print_presets(as_json: bool = False) -> None:
    from leanbert.presets import describe_presets

    rows = describe_presets()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="leanbert presets (counts: base model with pooler, as the BERT Hash seed counts)")
    for column in ("name", "total", "non-embedding", "+MLM head", "layers", "hidden", "components", "source"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["name"], f"{r['total_params']:,}", f"{r['non_embedding_params']:,}",
                      f"{r['with_mlm_head_params']:,}", str(r["layers"]), str(r["hidden"]), r["components"], r["source"])
    Console(width=200).print(table)


def _convert(args: argparse.Namespace) -> None:
    from leanbert.convert import convert_checkpoint

    convert_checkpoint(args.source_format, args.src, args.out)
    print(f"converted {args.source_format} checkpoint {args.src} -> {args.out}")


def _tokenizer_train(args: argparse.Namespace) -> None:
    from leanbert.tokenizer import train_wordpiece

    train_wordpiece(args.corpus, args.vocab_size, args.out, lowercase=not args.cased)
    print(f"trained a {args.vocab_size}-token WordPiece tokenizer -> {args.out}")


def _bench(args: argparse.Namespace) -> None:
    # with --json, stdout carries the one result object: what the runs print (Trainer's summary
    # lines) goes to stderr
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        result, title = _run_bench(args)
    result["allocator"] = args.allocator
    from leanbert.bench.results import write_results

    name = f"bench_{args.what}" + (f"_{result['preset']}" if args.what == "pretrain" and "preset" in result else "")
    rows = None
    if args.what == "attention":
        from leanbert.bench.attention_speed import table

        rows = table(result)
    write_results(args.out, name, result, title, table=rows)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


def _run_bench(args: argparse.Namespace) -> tuple[dict, str]:
    from leanbert.local_data import find_data_root, named_data_root

    named = named_data_root(args.data_dir)  # a named data root must hold what the benchmark reads
    if args.what == "model":
        from leanbert.bench.model_speed import run

        result = run(args.preset or "bert-base", find_data_root(args.data_dir), args.tokenizer, repeats=args.repeats,
                     named=named)
        title = "leanbert encoder vs transformers BertModel (SDPA)"
    elif args.what == "pretrain":
        from leanbert.bench.pretrain_speed import run

        result = run(args.preset, find_data_root(args.data_dir), repeats=args.repeats, named=named)
        title = "pretraining throughput: leanbert vs transformers BertForMaskedLM"
    elif args.what == "attention":
        from leanbert.bench.attention_speed import run

        try:
            lengths = [int(value) for value in args.lengths.split(",")]
        except ValueError:
            raise ValueError(f"--lengths {args.lengths!r}: expected comma-separated ints such as 1024,4096") from None
        result = run(lengths, repeats=args.repeats)
        title = "long sequences: block-sparse patterns and MEGA vs dense SDPA, transformers' BigBird and Longformer"
    else:
        from leanbert.bench.fff_speed import run

        result = run(repeats=args.repeats)
        title = "fast feed-forward vs dense feed-forward"
    return result, title


def _demo(args: argparse.Namespace) -> None:
    from leanbert.demo import run_demo

    run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leanbert", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("presets", help="list named architectures with exact parameter counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_presets)

    p = sub.add_parser("convert", help="import a published checkpoint")
    p.add_argument("--from", dest="source_format", required=True, metavar="FORMAT",
                   help="bert: BERT-layout checkpoints (BERT, Bort); ultrafastbert: UltraFastBERT / crammedBERT-FFF; "
                        "mega: MEGA encoders (transformers <= 4.39 layout); sparsebert: SparseBERT with its DAM mask")
    p.add_argument("src", help="hub name or local folder")
    p.add_argument("out", help="output folder (written atomically)")
    p.set_defaults(func=_convert)

    p = sub.add_parser("tokenizer", help="tokenizer tools")
    tok = p.add_subparsers(dest="tokenizer_command", required=True)
    t = tok.add_parser("train", help="train a WordPiece tokenizer on a domain corpus")
    t.add_argument("--corpus", nargs="+", required=True, help="text files")
    t.add_argument("--vocab-size", type=int, required=True)
    t.add_argument("--cased", action="store_true")
    t.add_argument("out")
    t.set_defaults(func=_tokenizer_train)

    p = sub.add_parser("bench", help="speed benchmarks against peers (ratios from one run)")
    p.add_argument("what", choices=["model", "pretrain", "fff", "attention"])
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    p.add_argument("--out", default=None, help="folder for JSON + Markdown results")
    p.add_argument("--preset", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--lengths", default="1024,4096", help="attention: sequence lengths, comma-separated")
    add_allocator_option(p)
    p.set_defaults(func=_bench)

    _add_optional_commands(sub)

    p = sub.add_parser("demo", help="the main job")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="runs/demo")
    add_allocator_option(p)
    p.set_defaults(func=_demo)
    return parser


def _add_optional_commands(sub) -> None:
    """Pipeline commands live beside their code: each module exposes `add_commands(subparsers)`."""
    import importlib

    for module in ("leanbert.train.commands", "leanbert.train.glue_commands", "leanbert.search.commands"):
        try:
            importlib.import_module(module).add_commands(sub)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


def main(argv: list[str] | None = None) -> int:
    import leanbert  # noqa: F401  (registers the Auto classes)

    args = build_parser().parse_args(argv)
    # commands that train, evaluate or benchmark keep freed memory, before any large allocation
    args.allocator = keep_freed_memory() if getattr(args, "keep_freed_memory", False) else "default"
    try:
        args.func(args)
    except (ValueError, OSError, pickle.UnpicklingError) as err:  # bad input, missing files, refused pickles
        print(f"leanbert {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
