"""Interleaved timing: candidates take turns, so drift in machine load hits all of them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(
    candidates: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, calls: int = 1
) -> dict[str, float]:
    """Median seconds per call of each candidate, calling them in turn `repeats` times.

    With `calls` > 1 each turn calls a candidate that many times back to back and times only the
    last call: what the candidate costs with its own data still in cache, rather than right after
    another candidate has run.
    """
    for _ in range(warmup):
        for run in candidates.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            for _ in range(calls - 1):
                run()
            start = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}
