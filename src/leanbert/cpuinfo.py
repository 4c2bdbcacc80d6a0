"""What this CPU reports about itself: the first processor's block of /proc/cpuinfo.

Two readers need it: compiled kernels tag their builds with the instruction-set flags
(`modeling/native_build.py`), and benchmark records name the CPU model (`bench/host.py`).
"""

from __future__ import annotations

from pathlib import Path


def first_cpu(path: str | Path = "/proc/cpuinfo") -> dict[str, str]:
    """{field: value} of the first processor listed ("model name", "flags", ...); {} where unreadable."""
    fields: dict[str, str] = {}
    try:
        text = Path(path).read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # end of the first processor's block
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields
