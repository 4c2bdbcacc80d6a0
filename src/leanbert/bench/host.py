"""What machine a benchmark ran on: speed ratios move with the host's caches and memory.

The FFF kernels are memory-bound (they read ~25 MB of input and write ~25 MB of output per
8,192-token call), while the dense feed-forward they are compared with is compute-bound, so the
same code gives different ratios on hosts with different cache sizes and memory bandwidth.
"""

from __future__ import annotations

import platform
from pathlib import Path

from leanbert.cpuinfo import first_cpu


def _cpu_model() -> str:
    """The model name, with the family and model numbers that tell CPU generations apart when the
    name alone does not (virtual machines often report a generic "Intel(R) Xeon(R) Processor")."""
    cpu = first_cpu()
    name = cpu.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in cpu and "model" in cpu:
        name += f" (family {cpu['cpu family']}, model {cpu['model']})"
    return name


def _cache_size(level: int) -> str | None:
    """Size of the unified cache at `level` seen by CPU 0 (e.g. "2048K"), from sysfs."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if int((index / "level").read_text()) == level and (index / "type").read_text().strip() == "Unified":
                return (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
    return None


def describe() -> dict:
    """{"cpu": model name, "l2": per-core L2 size, "l3": shared L3 size}; None where unknown."""
    return {"cpu": _cpu_model(), "l2": _cache_size(2), "l3": _cache_size(3)}
