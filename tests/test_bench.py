"""Benchmark plumbing on tiny shapes: the fields `leanbert bench fff --json` promises, and the host
record. Speed itself is never asserted here (benchmarks/ and `make bench` measure it)."""

from __future__ import annotations

from leanbert.bench import host
from leanbert.bench.fff_speed import layer_speed


def test_fff_layer_speed_reports_inference_and_training_ratios():
    result = layer_speed(tokens=40, width=16, depth=2, trees=2, repeats=1)
    assert result["layer_shape"] == {"tokens": 40, "width": 16, "depth": 2, "trees": 2}
    for key in ("layer_inference_speedup", "layer_inference_gather_speedup", "layer_training_speedup"):
        assert result[key] > 0
    assert set(result["layer_inference_seconds"]) == {"dense", "fff_kernel", "fff_gather"}
    assert set(result["layer_training_seconds"]) == {"dense", "fff_kernel"}


def test_host_description_names_the_cpu_and_its_caches():
    described = host.describe()
    assert set(described) == {"cpu", "l2", "l3"}
    assert isinstance(described["cpu"], str) and described["cpu"]
