"""Which GEMM serves `PackedLinear`'s CPU inference on this machine: oneDNN's prepacked weights, or
PyTorch's default path (`F.linear`: MKL or OpenBLAS, then a separate GELU).

Neither wins everywhere (float32, 2 threads):

    the project's earlier hosts     prepacked 1.3-2.7x the default path's throughput (768 -> 3072;
                                    the most for small M)
    AMD EPYC Zen 3, AVX2 (host C)   prepacked 0.79-1.11x on bert-base's four layer GEMMs at M = 1,024;
                                    the whole encoder at 8x128 against BertModel 0.84x with it, 1.03x
                                    without (unpadded: 1.05x and 1.27x)

So the choice is measured once per machine and GEMM shape (in, out, activation): both paths on
`ROWS` rows, in 9 interleaved turns (`measure`, 0.2-0.9 s a shape at bert-base's sizes), on the first
inference forward that meets the shape; the prepacked path is taken when its median is at least
`MARGIN` shorter. The records are kept as one JSON file in the cache folder, named by a hash of the
CPU's model and flags, torch's version and the thread count, so every later process on the machine
takes the same paths (the two paths' outputs differ at float rounding) and pays only a file read.
`LEANBERT_PACKED_LINEAR=1` or `0` overrides the measurement (always prepacked where oneDNN has the
op, or never); `LEANBERT_CACHE_DIR` moves the folder (default `$XDG_CACHE_HOME/leanbert`, else
`~/.cache/leanbert`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from leanbert.atomic_io import atomic_write_json
from leanbert.cpuinfo import first_cpu

logger = logging.getLogger(__name__)

ENV = "LEANBERT_PACKED_LINEAR"
MARGIN = 0.05  # the prepacked path must be this much faster: a noisy tie keeps the default path
ROWS = 1024  # rows timed per shape: a batch of 8 x 128 tokens

_choices: dict[str, bool] = {}  # this process's decisions, by shape key


def shape_key(in_features: int, out_features: int, activation: str | None) -> str:
    return f"{in_features}x{out_features}:{activation or 'none'}"


def packed_preferred(in_features: int, out_features: int, activation: str | None = None) -> bool:
    """Whether PackedLinear takes its prepacked path for this GEMM shape (decided on first use)."""
    key = shape_key(in_features, out_features, activation)
    if key not in _choices:
        _choices[key] = _decide(key, in_features, out_features, activation)
    return _choices[key]


def decisions() -> dict[str, str]:
    """This process's decisions so far, by shape: "prepacked" or "default" (for benchmark records)."""
    return {key: "prepacked" if packed else "default" for key, packed in sorted(_choices.items())}


def forget() -> None:
    """Drop this process's decisions: the next `packed_preferred()` decides again (tests)."""
    _choices.clear()


def cache_path() -> Path:
    """The file holding this machine's measured choices."""
    root = os.environ.get("LEANBERT_CACHE_DIR")
    if root is None:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "leanbert"
    cpu = first_cpu()
    key = "|".join([platform.machine(), cpu.get("model name", ""), cpu.get("flags", cpu.get("Features", "")),
                    torch.__version__, str(torch.get_num_threads())])
    return Path(root) / f"linear_backend-{hashlib.blake2b(key.encode(), digest_size=6).hexdigest()}.json"


def _read(path: Path) -> dict:
    """The records kept in `path`: {} when there are none, or (with a warning) when they are unreadable."""
    try:
        record = json.loads(path.read_text())
        if isinstance(record, dict) and isinstance(record.get("shapes"), dict):
            return record
        error = "no 'shapes' table"
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        error = exc
    logger.warning("leanbert: %s is unreadable (%s); measuring the GEMM paths again", path, error)
    return {}


def _decide(key: str, in_features: int, out_features: int, activation: str | None) -> bool:
    setting = os.environ.get(ENV, "auto")
    if setting in ("0", "1"):
        return setting == "1"
    if setting != "auto":
        raise ValueError(f"{ENV}={setting!r}; allowed: 1 (prepacked), 0 (default path), auto (measured once)")
    path = cache_path()
    record = _read(path)
    kept = record.get("shapes", {}).get(key)
    if isinstance(kept, dict) and isinstance(kept.get("packed"), bool):
        return kept["packed"]
    logger.info("leanbert: timing oneDNN's prepacked GEMM against the default one for %s (once per machine)", key)
    entry = measure(in_features, out_features, activation)
    record = {"cpu": first_cpu().get("model name", platform.machine()), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "rows": ROWS, "shapes": {**record.get("shapes", {}), key: entry}}
    try:
        atomic_write_json(path, record)
    except OSError as error:  # a read-only home: decide again in the next process
        logger.warning("leanbert: could not keep the GEMM choice in %s (%s)", path, error)
    return entry["packed"]


def measure(in_features: int, out_features: int, activation: str | None, rows: int = ROWS, turns: int = 9) -> dict:
    """Median seconds of one (rows, in) x (in, out) GEMM (+ activation) by each path, and the choice."""
    from torch.nn import functional as F

    from leanbert.modeling.packed_linear import ACTIVATIONS, _prepack

    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(out_features, in_features, generator=generator) / in_features**0.5
    bias, x = torch.zeros(out_features), torch.randn(rows, in_features, generator=generator)
    packed_weight, (fused_name, plain_activation) = _prepack(weight), ACTIVATIONS[activation]

    def packed():
        torch.ops.mkldnn._linear_pointwise(x, packed_weight, bias, fused_name, [], "none")

    def default():
        y = F.linear(x, weight, bias)
        if plain_activation is not None:
            plain_activation(y)

    samples = {"packed": [], "default": []}
    with torch.inference_mode():
        packed(), default()  # warm-up: first-call allocations and oneDNN's kernel choice
        for _ in range(turns):
            for name, run in (("packed", packed), ("default", default)):
                start = time.perf_counter()
                run()
                samples[name].append(time.perf_counter() - start)
    packed_s, default_s = statistics.median(samples["packed"]), statistics.median(samples["default"])
    return {"packed": packed_s < (1 - MARGIN) * default_s, "packed_seconds": packed_s, "default_seconds": default_s}
