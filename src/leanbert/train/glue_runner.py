"""A GLUE run: several tasks x several seeds, medians, and the results as JSON + Markdown.

``run_glue`` checks everything first -- task names, which tasks have data (an absent task or one
without a train split is *skipped with its reason*, never dropped), the model and tokenizer, and
every present task's files parsed whole -- and only then trains. Each (task, seed) is one
:func:`leanbert.train.finetune.finetune_task`; a task's score is the median over its seeds (the
GLUE-sane rule). The output folder is built in a temporary sibling and moved into place at the end,
so it is either complete or absent:

```
<out>/glue_results.json      every task: status, per-metric median and per-seed values (or the skip reason)
<out>/glue_results.md        the same as a Markdown table
<out>/<task>/seed<N>/        results.json per run (+ predictions_<split>.jsonl, model/ when asked)
```

Cost: ``sum over tasks of seeds x epochs x train rows`` training passes (see glue_protocols).
"""

from __future__ import annotations

import datetime
import math
import os
import statistics
from collections.abc import Callable, Iterable

from leanbert.atomic_io import atomic_directory, atomic_write_json, atomic_write_text
from leanbert.data.glue import GLUE_TASKS, available_tasks, get_task
from leanbert.train.finetune import (
    check_output_dir,
    default_output_dir,
    finetune_task,
    load_model_source,
    prepare_task,
    resolve_glue_dir,
    resolve_model_dir,
)
from leanbert.train.glue_protocols import PROTOCOL_SOURCES, protocol_settings

RESULTS_JSON = "glue_results.json"
RESULTS_MARKDOWN = "glue_results.md"
FIRST_SEED = 42  # run_glue.py's default seed; further seeds count up from it


def parse_tasks(tasks: str | Iterable[str] | None) -> list[str]:
    """Task names from "sst2,mrpc" or a list ("all"/None: every GLUE task), canonical and de-duplicated.

    Unknown names raise DataError listing the valid ones.
    """
    if tasks is None or tasks == "all":
        return list(GLUE_TASKS)
    names = tasks.split(",") if isinstance(tasks, str) else list(tasks)
    names = [name.strip() for name in names if name.strip()]
    if not names:
        raise ValueError("no GLUE task given; valid tasks: " + ", ".join(GLUE_TASKS))
    return list(dict.fromkeys(get_task(name).name for name in names))


def seed_list(seeds: int | Iterable[int] | None, default_count: int, first_seed: int = FIRST_SEED) -> list[int]:
    """``seeds`` as explicit seeds: a count N gives first_seed..first_seed+N-1; None the protocol's count."""
    if seeds is None:
        seeds = default_count
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        return [first_seed + offset for offset in range(seeds)]
    listed = list(dict.fromkeys(int(seed) for seed in seeds))
    if not listed:
        raise ValueError("seeds: empty list")
    return listed


def _finite_median(values: list[float]) -> float | None:
    """Median of the finite values, None when there are none. A diverged seed scores NaN, and
    statistics.median over a NaN depends on the order of the seeds."""
    finite = [value for value in values if math.isfinite(value)]
    return statistics.median(finite) if finite else None


def _summarize_task(runs: list[dict]) -> dict:
    first = runs[0]
    metrics = {
        name: {"median": _finite_median([run["metrics"][name] for run in runs]),
               "seeds": [run["metrics"][name] for run in runs]}
        for name in first["metrics"]
    }
    scores = [run["main_score"] for run in runs]
    return {
        "status": "done",
        "data": first["data"],
        "train_examples": first["train"]["examples"],
        "eval_examples": {split: values["examples"] for split, values in first["evaluation"].items()},
        "metrics": metrics,
        "main_score": {"median": _finite_median(scores), "seeds": scores},
        # seeds whose score is NaN or infinite (a diverged run); the medians leave them out
        "diverged_seeds": [run["seed"] for run in runs if not math.isfinite(run["main_score"])],
        "runs": [{key: run[key] for key in ("seed", "metrics", "main_score", "train")} for run in runs],
    }


def run_glue(model_dir: str | os.PathLike, tasks: str | Iterable[str] | None = None,
             data_dir: str | os.PathLike | None = None, protocol: str = "glue_sane",
             seeds: int | Iterable[int] | None = None, output_dir: str | os.PathLike | None = None,
             *, first_seed: int = FIRST_SEED, tokenizer: str | os.PathLike | None = None,
             save_predictions: bool = False, predictions_format: str = "jsonl", save_model: bool = False,
             log: Callable[[str], None] | None = None, **overrides) -> dict:
    """Fine-tune and score ``model_dir`` on GLUE ``tasks``; write ``glue_results.{json,md}``; return the results.

    ``data_dir``: a folder of ``<task>/{train,validation}.jsonl`` or GLUE TSV folders (or a data root
    with ``glue/``); None finds the local data, else uses the hub. ``seeds``: a count or explicit
    seeds (default: the protocol's count). ``model_dir`` may be a ``leanbert pretrain`` run folder
    (the model is read from its ``final/``). ``overrides``: :class:`FinetuneSettings` fields such as
    ``epochs``, ``max_seq_length``, ``max_train_samples``. ``output_dir`` defaults to
    ``<model_dir>/glue`` for a local model or run folder. Raises before any training on bad input.
    """
    log = log or (lambda message: None)
    settings = protocol_settings(protocol, **overrides)
    requested = parse_tasks(tasks)
    run_seeds = seed_list(seeds, settings.seeds, first_seed)
    glue_dir = resolve_glue_dir(data_dir)
    present, skipped = available_tasks(glue_dir, requested)
    source = load_model_source(resolve_model_dir(model_dir)[0], tokenizer, settings.max_seq_length)
    out = check_output_dir(output_dir or default_output_dir(model_dir, "glue"), RESULTS_JSON)

    # Every present task is parsed and tokenized before the first step, so a bad line in the last
    # task fails in seconds instead of after hours of training on the first ones.
    prepared = {}
    for name in present:
        prepared[name] = prepare_task(name, glue_dir, source.tokenizer, settings,
                                      getattr(source.config, "type_vocab_size", None))
        log(f"{name}: {len(prepared[name].train)} train rows, validated ({prepared[name].source})")
    for name, reason in skipped.items():
        log(f"{name}: skipped ({reason})")

    task_results: dict[str, dict] = {}
    with atomic_directory(out) as tmp:
        for name in requested:
            if name in skipped:
                task_results[name] = {"status": "skipped", "reason": skipped[name]}
                continue
            runs = []
            for seed in run_seeds:
                run = finetune_task(source, prepared[name], settings, seed, tmp / name / f"seed{seed}",
                                    save_predictions=save_predictions, predictions_format=predictions_format,
                                    save_model=save_model)
                log(f"{name} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in run["metrics"].items())
                    + f" ({run['train']['runtime_s']:.1f} s)")
                runs.append(run)
            task_results[name] = _summarize_task(runs)
        done = [name for name, result in task_results.items() if result["status"] == "done"]
        results = {
            "model": source.name,
            "protocol": settings.protocol,
            "protocol_source": PROTOCOL_SOURCES[settings.protocol],
            "settings": settings.as_dict(),
            "seeds": run_seeds,
            "data": str(glue_dir) if glue_dir is not None else "hub:nyu-mll/glue",
            "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "tasks": task_results,
            "tasks_done": done,
            "tasks_skipped": sorted(skipped, key=requested.index),
            # Mean of the task medians over the tasks that ran: not the official GLUE score when any is skipped.
            "average_main_score": _average_main_score([task_results[name] for name in done]),
        }
        atomic_write_json(tmp / RESULTS_JSON, results)
        atomic_write_text(tmp / RESULTS_MARKDOWN, glue_results_markdown(results))
    results["output_dir"] = str(out)
    return results


def _average_main_score(done: list[dict]) -> float | None:
    """Mean of the task medians; None when no task ran or one has no finite score."""
    medians = [task["main_score"]["median"] for task in done]
    return statistics.fmean(medians) if medians and None not in medians else None


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def glue_results_markdown(results: dict) -> str:
    """``glue_results.json`` as Markdown: one row per task metric (median, then every seed), skips with reasons."""
    settings = results["settings"]
    seeds = results["seeds"]
    lines = [
        f"# GLUE: {results['model']}",
        "",
        f"- protocol: `{results['protocol']}` ({results['protocol_source']})",
        f"- settings: seq {settings['max_seq_length']}, batch {settings['batch_size']}, lr {settings['learning_rate']:g}, "
        f"{settings['epochs']:g} epochs, warm-up {settings['warmup_ratio']:g}, weight decay {settings['weight_decay']:g}, "
        f"{settings['lr_scheduler']} schedule"
        + (f", first {settings['max_train_samples']} train rows only" if settings["max_train_samples"] else "")
        + (f", first {settings['max_eval_samples']} validation rows only" if settings["max_eval_samples"] else ""),
        f"- seeds: {', '.join(map(str, seeds))} (median reported)",
        f"- data: {results['data']}",
        "",
        f"| task | metric | median | seeds ({', '.join(map(str, seeds))}) | train rows |",
        "|---|---|---|---|---|",
    ]
    for name, task in results["tasks"].items():
        if task["status"] != "done":
            lines.append(f"| {name} | — | skipped | {task['reason'].replace('|', '/')} | — |")
            continue
        rows = list(task["metrics"].items())
        if len(rows) > 1:
            rows.append(("score (mean of metrics)", task["main_score"]))
        for metric, values in rows:
            lines.append(f"| {name} | {metric} | {_fmt(values['median'])} | "
                         f"{', '.join(_fmt(v) for v in values['seeds'])} | {task['train_examples']} |")
    lines += ["", f"Average of the task scores over the {len(results['tasks_done'])} task(s) that ran: "
                  f"{_fmt(results['average_main_score'])}"]
    if results["tasks_skipped"]:
        lines.append(f"(skipped: {', '.join(results['tasks_skipped'])}; this is not the official GLUE score)")
    return "\n".join(lines) + "\n"
