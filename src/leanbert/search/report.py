"""A search's report: `search.md` (one row per candidate, best error first) and `pareto.png`.

The plot has two panels sharing the error axis: held-out loss against parameters (log scale) and against
inference time relative to T. Front members are filled, the choice is ringed and named. matplotlib's Agg
canvas, no display; both files written atomically. Cost: O(n log n) for n candidates, ~0.2 s to render.
"""

from __future__ import annotations

import math
from pathlib import Path

from leanbert.atomic_io import atomic_file, atomic_write_text

REPORT_FILE = "search.md"
PLOT_FILE = "pareto.png"


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)  # search.json holds null for a diverged run's loss


def markdown(result: dict) -> str:
    rows = sorted(result["candidates"], key=lambda r: (0, r["eval_loss"]) if _finite(r["eval_loss"]) else (1, 0))
    lines = [
        "# leanbert search: optimal subarchitecture extraction",
        "",
        f"- recipe: `{result['recipe']}`; proxy runs of {result['proxy_steps']} steps each",
        f"- T (the largest candidate, the ratios' reference): **{result['reference']}**",
        f"- inference time measured on batches of {result['speed_batch'][0]} x {result['speed_batch'][1]} tokens, "
        "in turns with T" + (f", on {result['host']['cpu']} with {result['threads']} threads" if result.get("host")
                             else ""),
        f"- choice: least (p/p_T)^{result['params_weight']:g} (i/i_T)^{result['time_weight']:g} among candidates "
        f"on the front whose loss is within {100 * result['error_tolerance']:g}% of the best",
        (f"- chosen: **{result['chosen']}** (`{_run_of(result)}/final`)" if result["chosen"]
         else "- chosen: none: every proxy run diverged (lower training.learning_rate)"),
        "",
        "| candidate | params | non-embedding | p / p_T | i / i_T | held-out loss | perplexity | cost | front | chosen |",
        "|---|---:|---:|---:|---:|---:|---:|---:|:-:|:-:|",
    ]
    for r in rows:
        loss = f"{r['eval_loss']:.4f}" if _finite(r["eval_loss"]) else r["status"]
        ppl = f"{r['eval_perplexity']:.1f}" if _finite(r["eval_perplexity"]) else "-"
        lines.append(f"| {r['name']} | {r['params']:,} | {r['non_embedding_params']:,} | {r['params_ratio']:.3f} | "
                     f"{r['time_ratio']:.3f} | {loss} | {ppl} | {r['cost']:.4f} | {'●' if r['on_front'] else ''} | "
                     f"{'✓' if r['name'] == result['chosen'] else ''} |")
    if result["refused"]:
        lines += ["", "Combinations the config refuses (not candidates):", ""]
        lines += [f"- {r['name']}: {r['reason']}" for r in result["refused"]]
    return "\n".join(lines) + "\n"


def _run_of(result: dict) -> str:
    return next(r["run"] for r in result["candidates"] if r["name"] == result["chosen"])


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["candidates"] if _finite(r["eval_loss"])]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    if not rows:
        fig.text(0.5, 0.5, "every proxy run diverged: no loss to plot", ha="center")
    for ax, key, label in ((axes[0], "params", "parameters"), (axes[1], "time_ratio", "inference time / T's")):
        for on_front in (False, True):
            points = [r for r in rows if r["on_front"] == on_front]
            ax.scatter([r[key] for r in points], [r["eval_loss"] for r in points],
                       s=30, facecolors="C0" if on_front else "none", edgecolors="C0",
                       label="Pareto front" if on_front else "other candidates")
        for r in rows:
            if r["name"] == result["chosen"]:
                ax.scatter([r[key]], [r["eval_loss"]], s=160, facecolors="none", edgecolors="C3", linewidths=2)
                ax.annotate(r["name"], (r[key], r["eval_loss"]), textcoords="offset points", xytext=(8, -12), color="C3")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    if rows:
        axes[0].set_xscale("log")
        axes[0].legend(loc="best", fontsize=8)
    axes[0].set_ylabel("held-out MLM loss after the proxy run")
    fig.suptitle(f"leanbert search (T = {result['reference']}; chosen: {result['chosen']})")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_report(result: dict, out: Path) -> None:
    atomic_write_text(out / REPORT_FILE, markdown(result))  # first: the table does not wait on the plot
    plot(result, out / PLOT_FILE)
