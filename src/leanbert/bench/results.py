"""Benchmark results written atomically as JSON and a Markdown table."""

from __future__ import annotations

import json
from pathlib import Path

from leanbert.atomic_io import atomic_write_json, atomic_write_text


def write_results(out_dir: str | Path | None, name: str, result: dict, title: str) -> None:
    if out_dir is None:
        return
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / f"{name}.json", result)
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    for key, value in result.items():
        shown = f"{value:.4g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, (dict, list)) else value
        lines.append(f"| {key} | {shown} |")
    atomic_write_text(out_dir / f"{name}.md", "\n".join(lines) + "\n")
