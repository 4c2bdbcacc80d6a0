"""A run's report: Markdown with PNG plots of its training logs, and its GLUE scores against the seeds'.

Reads what a run folder already holds, tolerating whatever is missing:

* the model's config from ``<run>/`` or ``<run>/final/`` (``leanbert pretrain``'s layout), and its held-out
  MLM loss/perplexity from ``<run>/metrics.json``;
* the pretraining log history, from the first of ``<run>/log_history.jsonl`` (one log dict per line;
  an unreadable line, e.g. one cut short by a crash, is skipped and counted), ``<run>/trainer_state.json``,
  or the ``trainer_state.json`` of the run's last ``checkpoint-N/``;
* GLUE results, ``glue_results.json`` in the run folder or one level below (``<run>/glue/``).

Plots (matplotlib's Agg canvas, no display): training/eval loss, learning rate and tokens/s against
the step, and a bar chart of GLUE scores next to the published BERT Hash rows. Tokens/s is taken
from a logged ``tokens_per_second`` (instantaneous), else computed between consecutive logs from
``num_input_tokens_seen`` and ``train_runtime``, else the Trainer's running average
``train_tokens_per_second``. Every file is written atomically; ``report.md`` last.

Cost: one pass over the logs; each plot takes ~0.1 s to render.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from leanbert.atomic_io import atomic_file, atomic_write_text
from leanbert.glue_reference import BERT_HASH_ROWS, MAJORITY_CLASS_ROW, REPORTED, ULTRAFASTBERT_ROW
from leanbert.train.jsonl_log import LOG_FILE_NAME as LOG_HISTORY_JSONL
from leanbert.train.pretrain import FINAL_DIR_NAME, METRICS_FILE_NAME

REPORT_FILE = "report.md"
TRAINER_STATE = "trainer_state.json"
GLUE_RESULTS = "glue_results.json"
# Logged throughput, instantaneous first; the Trainer's own key is a running average since the start.
INSTANT_TOKENS_KEYS = ("tokens_per_second", "tokens_per_sec")
AVERAGE_TOKENS_KEY = "train_tokens_per_second"


# --------------------------------------------------------------------------- logs


@dataclass
class LogHistory:
    """Log dicts of a training run, where they came from, and how many lines could not be read."""

    entries: list[dict] = field(default_factory=list)
    source: Path | None = None
    unreadable_lines: int = 0


def _checkpoint_step(path: Path) -> int:
    match = re.fullmatch(r"checkpoint-(\d+)", path.name)
    return int(match.group(1)) if match else -1


def load_log_history(run_dir: str | os.PathLike) -> LogHistory:
    """The run's log history (see the module docstring for where it is looked for); empty when none."""
    run = Path(run_dir)
    jsonl = run / LOG_HISTORY_JSONL
    if jsonl.is_file():
        history = LogHistory(source=jsonl)
        for line in jsonl.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                history.unreadable_lines += 1
                continue
            if isinstance(entry, dict):
                history.entries.append(entry)
            else:
                history.unreadable_lines += 1
        return history
    checkpoints = sorted((p for p in run.glob("checkpoint-*") if _checkpoint_step(p) >= 0), key=_checkpoint_step)
    for state in [run / TRAINER_STATE] + [p / TRAINER_STATE for p in reversed(checkpoints)]:
        if state.is_file():
            try:
                entries = json.loads(state.read_text(encoding="utf-8")).get("log_history", [])
            except (json.JSONDecodeError, AttributeError):
                continue
            return LogHistory([e for e in entries if isinstance(e, dict)], state)
    return LogHistory()


def _number(value, finite: bool = True) -> float | None:
    """value as a float (None when it is not a number); NaN and inf only with finite=False."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # Trainer's printed logs are strings; a hand-written jsonl may copy them
        except (TypeError, ValueError):
            return None
    return float(value) if math.isfinite(value) or not finite else None


def _nonfinite_loss_steps(entries: list[dict]) -> list[str]:
    """Steps whose logged loss or eval loss is NaN or inf (the curves leave them out)."""
    steps = []
    for entry in entries:
        values = [_number(entry.get(key), finite=False) for key in ("loss", "eval_loss")]
        if not _is_summary(entry) and any(v is not None and not math.isfinite(v) for v in values):
            steps.append(str(entry.get("step", "?")))
    return steps


def _is_summary(entry: dict) -> bool:
    """Trainer's end-of-training entry (averages over the whole run), not a point on a curve."""
    return "train_loss" in entry and "train_runtime" in entry


Series = tuple[list[float], list[float]]


def training_curves(entries: list[dict]) -> dict[str, Series]:
    """``{name: (steps, values)}`` for loss, eval_loss, learning_rate and tokens_per_second (absent ones left out)."""
    curves: dict[str, Series] = {}

    def add(name: str, step: float, value: float | None) -> None:
        if value is not None:
            steps, values = curves.setdefault(name, ([], []))
            steps.append(step)
            values.append(value)

    previous_tokens: tuple[float, float] | None = None  # (tokens seen, runtime) at the last log
    derived: Series = ([], [])
    for position, entry in enumerate(entries):
        if _is_summary(entry):
            continue
        step = _number(entry.get("step"))
        step = float(position + 1) if step is None else step
        add("loss", step, _number(entry.get("loss")))
        add("eval_loss", step, _number(entry.get("eval_loss")))
        add("learning_rate", step, _number(entry.get("learning_rate", entry.get("lr"))))
        instant = next((_number(entry[k]) for k in INSTANT_TOKENS_KEYS if k in entry), None)
        add("tokens_per_second", step, instant)
        tokens, runtime = _number(entry.get("num_input_tokens_seen")), _number(entry.get("train_runtime"))
        if tokens is not None and runtime is not None:
            if previous_tokens is not None and runtime > previous_tokens[1]:
                derived[0].append(step)
                derived[1].append((tokens - previous_tokens[0]) / (runtime - previous_tokens[1]))
            previous_tokens = (tokens, runtime)
        if AVERAGE_TOKENS_KEY in entry:
            add("_average_tokens_per_second", step, _number(entry[AVERAGE_TOKENS_KEY]))
    average = curves.pop("_average_tokens_per_second", None)
    if "tokens_per_second" not in curves:
        if derived[0]:
            curves["tokens_per_second"] = derived
        elif average is not None:
            curves["tokens_per_second"] = average
    return curves


def _summary_entry(entries: list[dict]) -> dict:
    return next((entry for entry in reversed(entries) if _is_summary(entry)), {})


# --------------------------------------------------------------------------- plots


def _save_figure(figure, path: Path) -> None:
    """Render to a temporary sibling, then rename: the PNG is complete or absent."""
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)


def _line_plot(path: Path, title: str, ylabel: str, series: dict[str, Series], log_y: bool = False) -> None:
    # Figure without pyplot: no global backend state, so this is safe inside other programs and threads.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.6), layout="tight")
    axes = figure.add_subplot()
    for label, (steps, values) in series.items():
        axes.plot(steps, values, label=label, marker="o" if len(steps) < 30 else None, markersize=3)
    axes.set_title(title)
    axes.set_xlabel("step")
    axes.set_ylabel(ylabel)
    if log_y and all(v > 0 for _, values in series.values() for v in values):
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    if len(series) > 1:
        axes.legend()
    _save_figure(figure, path)


def _bar_plot(path: Path, title: str, groups: list[str], bars: dict[str, list[float | None]]) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.2, 3.8), layout="tight")
    axes = figure.add_subplot()
    width = 0.8 / max(len(bars), 1)
    for index, (label, values) in enumerate(bars.items()):
        xs = [g + (index - (len(bars) - 1) / 2) * width for g in range(len(groups))]
        axes.bar(xs, [math.nan if v is None else v for v in values], width, label=label)
    axes.set_xticks(range(len(groups)), groups)
    axes.set_ylim(0, 1)
    axes.set_ylabel("score")
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="small", ncols=2)
    _save_figure(figure, path)


# --------------------------------------------------------------------------- GLUE


def find_glue_results(run_dir: str | os.PathLike) -> Path | None:
    """``<run>/glue_results.json``, ``<run>/glue/``, ``<run>/final/glue/``, else any one level down."""
    run = Path(run_dir)
    for candidate in (run / GLUE_RESULTS, run / "glue" / GLUE_RESULTS, run / FINAL_DIR_NAME / "glue" / GLUE_RESULTS,
                      *sorted(run.glob(f"*/{GLUE_RESULTS}"))):
        if candidate.is_file():
            return candidate
    return None


def _our_median(results: dict, task: str, metric: str) -> float | None:
    entry = results.get("tasks", {}).get(task, {})
    if entry.get("status") != "done":
        return None
    if metric == REPORTED:
        return entry.get("main_score", {}).get("median")
    return entry.get("metrics", {}).get(metric, {}).get("median")


def _cell(values: list[float | None]) -> str:
    if all(v is None for v in values):
        return "—"
    return " / ".join("—" if v is None else f"{v:.4f}" for v in values)


def _task_status(results: dict, task: str) -> str:
    entry = results.get("tasks", {}).get(task)
    if entry is None:
        return "not run"
    return "skipped" if entry.get("status") != "done" else "—"


# (column title, task, metrics) of the BERT Hash model card's table
_BERT_HASH_COLUMNS = (
    ("MNLI (acc m/mm)", "mnli", ("accuracy_matched", "accuracy_mismatched")),
    ("MRPC (f1/acc)", "mrpc", ("f1", "accuracy")),
    ("SST-2 (acc)", "sst2", ("accuracy",)),
)
_ULTRAFASTBERT_TASKS = ("mnli", "qqp", "qnli", "sst2", "stsb", "mrpc", "rte")


def glue_comparison_markdown(results: dict, parameters: str = "—") -> list[str]:
    """Markdown lines: this run's medians in the seed tables' own columns, next to the published rows."""
    ours_label = f"**this run** ({results.get('protocol', '?')}, {len(results.get('seeds', []))} seed(s))"
    lines = [
        "### Against BERT Hash (seed 000)",
        "",
        f"Published rows: {BERT_HASH_ROWS[0].source}.",
        "",
        "| model | parameters | " + " | ".join(title for title, _, _ in _BERT_HASH_COLUMNS) + " |",
        "|---|---|" + "---|" * len(_BERT_HASH_COLUMNS),
    ]
    ours = []
    for _, task, metrics in _BERT_HASH_COLUMNS:
        cell = _cell([_our_median(results, task, m) for m in metrics])
        ours.append(cell if cell != "—" else _task_status(results, task))
    lines.append(f"| {ours_label} | {parameters} | " + " | ".join(ours) + " |")
    for row in (*BERT_HASH_ROWS, MAJORITY_CLASS_ROW):
        cells = [_cell([row.scores.get(task, {}).get(m) for m in metrics]) for _, task, metrics in _BERT_HASH_COLUMNS]
        lines.append(f"| {row.model} | {row.parameters} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"The last row is the floor: {MAJORITY_CLASS_ROW.source}. A score at the floor means the model "
        "learned nothing beyond the label balance (bert-hash-femto's published MRPC row is exactly that).",
        "",
        "### Against UltraFastBERT (seed 001)",
        "",
        f"Published row: {ULTRAFASTBERT_ROW.source}. The card does not name the metric per task; "
        "our cells are each task's score (the mean of its metrics, mnli: of matched and mismatched).",
        "",
        "| model | " + " | ".join(t.upper() for t in _ULTRAFASTBERT_TASKS) + " | average |",
        "|---|" + "---|" * (len(_ULTRAFASTBERT_TASKS) + 1),
    ]
    our_scores = [_our_median(results, task, REPORTED) for task in _ULTRAFASTBERT_TASKS]
    cells = [_cell([s]) if s is not None else _task_status(results, t) for s, t in zip(our_scores, _ULTRAFASTBERT_TASKS)]
    average = statistics.fmean(our_scores) if all(s is not None for s in our_scores) else None
    lines.append(f"| {ours_label} | " + " | ".join(cells) + f" | {_cell([average]) if average is not None else '— (tasks missing)'} |")
    lines.append(f"| {ULTRAFASTBERT_ROW.model} | "
                 + " | ".join(_cell([ULTRAFASTBERT_ROW.scores[t][REPORTED]]) for t in _ULTRAFASTBERT_TASKS)
                 + f" | {_cell([ULTRAFASTBERT_ROW.average])} |")
    return lines


def _glue_bars(results: dict) -> tuple[list[str], dict[str, list[float | None]]]:
    groups = [("SST-2 acc", "sst2", "accuracy"), ("MRPC f1", "mrpc", "f1"), ("MRPC acc", "mrpc", "accuracy"),
              ("MNLI-m acc", "mnli", "accuracy_matched"), ("MNLI-mm acc", "mnli", "accuracy_mismatched")]
    bars: dict[str, list[float | None]] = {"this run": [_our_median(results, t, m) for _, t, m in groups]}
    for row in BERT_HASH_ROWS:
        bars[row.model] = [row.scores.get(t, {}).get(m) for _, t, m in groups]
    return [label for label, _, _ in groups], bars


# --------------------------------------------------------------------------- the report


def _model_summary(run: Path) -> tuple[str, str]:
    """(one-line description, base-model parameter count) from ``<run>/config.json`` or ``<run>/final/``."""
    model_dir = run if (run / "config.json").is_file() else run / FINAL_DIR_NAME
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        return f"no config.json in the run folder or its {FINAL_DIR_NAME}/", "—"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return f"{config_path} is not valid JSON", "—"
    keys = ("model_type", "embedding_type", "attention_type", "ffn_type", "hidden_size", "num_hidden_layers",
            "num_attention_heads", "intermediate_size", "vocab_size")
    description = ", ".join(f"{k} {config[k]}" for k in keys if k in config)
    try:
        import torch
        from transformers import AutoConfig, AutoModel

        import leanbert  # noqa: F401  (registers model_type "leanbert")

        with torch.device("meta"):  # shapes only: no memory, no weights read
            model = AutoModel.from_config(AutoConfig.from_pretrained(str(model_dir)))
        parameters = f"{sum(p.numel() for p in model.parameters()):,}"
    except Exception:  # an unknown or partial config still gets a report, just no count
        parameters = "—"
    return description, parameters


def _read_json_object(path: Path) -> dict:
    """A JSON object file's content; {} when absent or unreadable (the report then leaves those rows out)."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return content if isinstance(content, dict) else {}


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "—" if value is None else format(value, spec)


def write_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Write ``<out_dir>/report.md`` (default ``<run_dir>/report/``) and its PNGs; return the report's path."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run dir {run}: no such folder")
    out = Path(out_dir) if out_dir is not None else run / "report"
    out.mkdir(parents=True, exist_ok=True)
    description, parameters = _model_summary(run)
    history = load_log_history(run)
    curves = training_curves(history.entries)
    summary = _summary_entry(history.entries)
    final_metrics = _read_json_object(run / METRICS_FILE_NAME)

    lines = [f"# Run report: {run.name}", "", f"- run folder: `{run}`", f"- model: {description}",
             f"- parameters (base model with pooler): {parameters}"]
    if history.source is None:
        lines.append(f"- logs: none found (looked for {LOG_HISTORY_JSONL}, {TRAINER_STATE}, checkpoint-*/{TRAINER_STATE})")
    else:
        skipped = f", {history.unreadable_lines} unreadable line(s) skipped" if history.unreadable_lines else ""
        lines.append(f"- logs: `{history.source}` ({len(history.entries)} entries{skipped})")

    lines += ["", "## Training", ""]
    if curves:
        rows = []
        if "loss" in curves:
            steps, values = curves["loss"]
            rows.append(("training loss (first / last / min)",
                         f"{_fmt(values[0])} / {_fmt(values[-1])} / {_fmt(min(values))} (steps {steps[0]:g}–{steps[-1]:g})"))
        if "eval_loss" in curves:
            rows.append(("eval loss (last / min)", f"{_fmt(curves['eval_loss'][1][-1])} / {_fmt(min(curves['eval_loss'][1]))}"))
        if "learning_rate" in curves:
            rows.append(("learning rate (peak / last)",
                         f"{_fmt(max(curves['learning_rate'][1]))} / {_fmt(curves['learning_rate'][1][-1])}"))
        if "tokens_per_second" in curves:
            rows.append(("tokens/s (median over logs)", f"{statistics.median(curves['tokens_per_second'][1]):,.0f}"))
        nonfinite = _nonfinite_loss_steps(history.entries)
        if nonfinite:
            rows.append(("**NaN or inf loss logged** (steps)", ", ".join(nonfinite)))
        # Trainer's summary covers the steps of its own call: after --resume, only the resumed ones
        first = final_metrics.get("train_loss_first_step")
        span = "whole run" if first in (None, 1) else f"steps {first} on, since --resume"
        for key, label in (("train_runtime", f"train runtime (s; {span})"),
                           ("train_loss", f"mean training loss ({span})"), ("num_input_tokens_seen", "tokens seen")):
            if _number(summary.get(key), finite=False) is not None:
                rows.append((label, _fmt(_number(summary[key], finite=False), ",.4g")))
        for key, label in (("eval_loss", f"held-out MLM loss ({METRICS_FILE_NAME})"),
                           ("eval_perplexity", f"held-out perplexity ({METRICS_FILE_NAME})")):
            if _number(final_metrics.get(key), finite=False) is not None:
                rows.append((label, _fmt(_number(final_metrics[key], finite=False), ",.4g")))
        lines += ["| quantity | value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows] + [""]
        plots = [
            ("loss.png", "loss", "loss",
             {label: curves[k] for k, label in (("loss", "training loss"), ("eval_loss", "eval loss")) if k in curves},
             True),
            ("learning_rate.png", "learning rate", "learning rate",
             {"learning rate": curves["learning_rate"]} if "learning_rate" in curves else {}, False),
            ("tokens_per_second.png", "throughput", "tokens/s",
             {"tokens/s": curves["tokens_per_second"]} if "tokens_per_second" in curves else {}, False),
        ]
        for file_name, title, ylabel, series, log_y in plots:
            if series:
                _line_plot(out / file_name, title, ylabel, series, log_y)
                lines.append(f"![{title}]({file_name})")
            else:
                lines.append(f"_No {title} values in the logs._")
            lines.append("")
    else:
        lines += ["_No loss, learning-rate or throughput values in the logs._", ""]

    lines += ["## GLUE", ""]
    glue_path = find_glue_results(run)
    glue = None
    if glue_path is not None:
        try:
            glue = json.loads(glue_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            lines += [f"_{glue_path} is not valid JSON ({err.msg}, line {err.lineno})._", ""]
    if glue is None and glue_path is None:
        lines += [f"_No {GLUE_RESULTS} in `{run}` or its subfolders (run `leanbert glue --model {run}`)._", ""]
    if isinstance(glue, dict):
        from leanbert.train.glue_runner import glue_results_markdown

        lines += [f"From `{glue_path}`.", ""]
        lines += glue_comparison_markdown(glue, parameters) + [""]
        groups, bars = _glue_bars(glue)
        _bar_plot(out / "glue.png", "GLUE dev: this run vs BERT Hash (seed 000)", groups, bars)
        lines += ["![GLUE vs BERT Hash](glue.png)", "", "### All tasks, every seed", ""]
        try:
            detail = glue_results_markdown(glue).splitlines()
        except (KeyError, TypeError, AttributeError) as err:  # a hand-edited or older file: keep the rest
            detail = [f"_The per-seed table needs field {err} that {glue_path.name} lacks._"]
        lines += [line.replace("# GLUE:", "#### GLUE:", 1) if line.startswith("# ") else line for line in detail]

    report = out / REPORT_FILE
    atomic_write_text(report, "\n".join(lines).rstrip() + "\n")
    return report
