"""Benchmark plumbing on tiny shapes: the fields `leanbert bench fff --json` promises, and the host
record. Speed itself is never asserted here (benchmarks/ and `make bench` measure it)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from leanbert.bench import attention_speed, host
from leanbert.bench.fff_speed import layer_speed


def test_fff_layer_speed_reports_inference_and_training_ratios():
    result = layer_speed(tokens=40, width=16, depth=2, trees=2, repeats=1)
    assert result["layer_shape"] == {"tokens": 40, "width": 16, "depth": 2, "trees": 2}
    for key in ("layer_inference_speedup", "layer_inference_gather_speedup", "layer_training_speedup",
                "layer_inference_back_to_back_speedup", "layer_inference_paper_setup_speedup"):
        assert result[key] > 0
    assert set(result["layer_inference_seconds"]) == {"dense", "fff_kernel", "fff_gather"}
    assert set(result["layer_inference_back_to_back_seconds"]) == {"dense", "fff_kernel"}
    assert set(result["layer_inference_paper_setup_seconds"]) == {"dense", "fff_kernel"}
    assert set(result["layer_training_seconds"]) == {"dense", "fff_kernel"}
    assert set(result["layer_inference_page_faults"]) == {"dense", "fff_kernel"}


def test_attention_speed_times_every_model_at_every_length_against_bert():
    result = attention_speed.run([140], repeats=1, hidden=64, layers=1)
    row = result["lengths"]["140"]
    assert set(row) == {"bert_sdpa", "bigbird_hf", "longformer_hf", "leanbert_full", "leanbert_bigbird",
                        "leanbert_longformer", "leanbert_mega"}
    assert row["bert_sdpa"]["speed_vs_bert_sdpa"] == 1.0 and all(r["ms"] > 0 for r in row.values())
    assert attention_speed.table(result)[0]["tokens"] == "140"


_REALLOCATE = textwrap.dedent('''
    import sys
    from leanbert.allocator import keep_freed_memory, minor_faults
    setting = keep_freed_memory() if sys.argv[1] == "keep" else "default"
    SIZE, PAGE = 64 << 20, 4096  # 64 MB: above glibc's largest mmap threshold
    def fill():  # written page by page, then freed
        buffer = bytearray(SIZE)
        buffer[::PAGE] = b"x" * (SIZE // PAGE)
    fill()
    before = minor_faults()
    fill()
    print(setting, minor_faults() - before)
''')


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_kept_memory_serves_a_second_large_allocation_without_page_faults():
    def faults(mode):
        out = subprocess.run([sys.executable, "-c", _REALLOCATE, mode], capture_output=True, text=True, check=True)
        setting, count = out.stdout.strip().rsplit(" ", 1)
        return setting, int(count)

    setting, kept = faults("keep")
    assert setting.startswith("glibc, freed memory kept"), setting
    assert kept < 100  # the freed 64 MB is reused: no page is mapped again
    assert faults("default")[1] > 10_000  # glibc unmaps it and maps 16,384 fresh pages


def test_host_description_names_the_cpu_and_its_caches():
    described = host.describe()
    assert set(described) == {"cpu", "l2", "l3"}
    assert isinstance(described["cpu"], str) and described["cpu"]
