"""Benchmark results written atomically as JSON and a Markdown table."""

from __future__ import annotations

import json
from pathlib import Path

from leanbert.atomic_io import atomic_write_json, atomic_write_text


def write_results(out_dir: str | Path | None, name: str, result: dict, title: str,
                  table: list[dict] | None = None) -> None:
    """`result` as JSON, and as Markdown: one row per field, then `table` (rows of equal keys), if given."""
    if out_dir is None:
        return
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / f"{name}.json", result)
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    for key, value in result.items():
        if table is not None and isinstance(value, dict) and any(isinstance(inner, dict) for inner in value.values()):
            continue  # nested rows: the table shows them
        shown = f"{value:.4g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, (dict, list)) else value
        lines.append(f"| {key} | {shown} |")
    if table:
        lines += ["", "| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
        lines += ["| " + " | ".join(str(value) for value in row.values()) + " |" for row in table]
    atomic_write_text(out_dir / f"{name}.md", "\n".join(lines) + "\n")
