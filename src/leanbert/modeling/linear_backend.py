"""Which GEMM serves `PackedLinear`'s CPU inference on this machine: oneDNN's prepacked weights, or
PyTorch's default path (`F.linear`: MKL or OpenBLAS, then a separate GELU).

Neither wins everywhere (float32, 2 threads):

    the project's earlier hosts     prepacked 1.3-2.7x the default path's throughput (768 -> 3072;
                                    the most for small M)
    AMD EPYC Zen 3, AVX2 (host C)   prepacked 0.79-1.11x on bert-base's four layer GEMMs at M = 1,024;
                                    the whole encoder at 8x128 against BertModel 0.84x with it, 1.03x
                                    without (unpadded: 1.05x and 1.27x)

So the choice is measured, once per machine: both paths over those four shapes at M = 1,024, in
interleaved turns (`measure`, ~1 s), and the prepacked path is taken when its median total is
at least `MARGIN` shorter. The record is kept as JSON in the cache folder, named by a hash of the
CPU's model and flags, torch's version and the thread count, so every later process on the machine
takes the same path (the two paths' outputs differ at float rounding) and pays nothing but a file
read. `LEANBERT_PACKED_LINEAR=1` or `0` overrides the measurement (always prepacked where oneDNN
has the op, or never); `LEANBERT_CACHE_DIR` moves the folder (default `$XDG_CACHE_HOME/leanbert`,
else `~/.cache/leanbert`).
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
SHAPES = ((768, 2304, None), (768, 768, None), (768, 3072, "gelu"), (3072, 768, None))  # (in, out, activation)

_choice: bool | None = None  # this process's decision, made on first use


def packed_preferred() -> bool:
    """Whether PackedLinear takes its prepacked path in this process (decided on the first call)."""
    global _choice
    if _choice is None:
        _choice = _decide()
    return _choice


def forget() -> None:
    """Drop this process's decision: the next `packed_preferred()` decides again (tests)."""
    global _choice
    _choice = None


def cache_path() -> Path:
    """The file holding this machine's measured choice."""
    root = os.environ.get("LEANBERT_CACHE_DIR")
    if root is None:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "leanbert"
    cpu = first_cpu()
    key = "|".join([platform.machine(), cpu.get("model name", ""), cpu.get("flags", cpu.get("Features", "")),
                    torch.__version__, str(torch.get_num_threads())])
    return Path(root) / f"linear_backend-{hashlib.blake2b(key.encode(), digest_size=6).hexdigest()}.json"


def _decide() -> bool:
    setting = os.environ.get(ENV, "auto")
    if setting in ("0", "1"):
        return setting == "1"
    if setting != "auto":
        raise ValueError(f"{ENV}={setting!r}; allowed: 1 (prepacked), 0 (default path), auto (measured once)")
    path = cache_path()
    try:
        return bool(json.loads(path.read_text())["packed"])
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("leanbert: %s is unreadable (%s); measuring the GEMM paths again", path, error)
    logger.info("leanbert: timing oneDNN's prepacked GEMM against the default one (once per machine, ~1 s)")
    record = measure()
    try:
        atomic_write_json(path, record)
    except OSError as error:  # a read-only home: decide again in the next process
        logger.warning("leanbert: could not keep the GEMM choice in %s (%s)", path, error)
    return record["packed"]


def measure(rows: int = 1024, turns: int = 5) -> dict:
    """Median seconds of bert-base's four layer GEMMs on `rows` rows by each path; the choice."""
    from torch.nn import functional as F

    from leanbert.modeling.packed_linear import ACTIVATIONS, _prepack

    generator = torch.Generator().manual_seed(0)
    layers = []
    for n_in, n_out, activation in SHAPES:
        weight = torch.randn(n_out, n_in, generator=generator) / n_in**0.5
        bias, x = torch.zeros(n_out), torch.randn(rows, n_in, generator=generator)
        layers.append((x, weight, _prepack(weight), bias, activation))

    def packed():
        for x, _, packed_weight, bias, activation in layers:
            torch.ops.mkldnn._linear_pointwise(x, packed_weight, bias, ACTIVATIONS[activation][0], [], "none")

    def default():
        for x, weight, _, bias, activation in layers:
            y = F.linear(x, weight, bias)
            if activation is not None:
                ACTIVATIONS[activation][1](y)

    samples = {"packed": [], "default": []}
    with torch.inference_mode():
        packed(), default()  # warm-up: first-call allocations and oneDNN's kernel choice
        for _ in range(turns):
            for name, run in (("packed", packed), ("default", default)):
                start = time.perf_counter()
                run()
                samples[name].append(time.perf_counter() - start)
    packed_s, default_s = statistics.median(samples["packed"]), statistics.median(samples["default"])
    return {"packed": packed_s < (1 - MARGIN) * default_s, "packed_seconds": packed_s, "default_seconds": default_s,
            "rows": rows, "turns": turns, "cpu": first_cpu().get("model name", platform.machine()),
            "torch": torch.__version__, "threads": torch.get_num_threads()}
