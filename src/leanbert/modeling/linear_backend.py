"""Which GEMM serves `PackedLinear`'s CPU inference on this machine: oneDNN's prepacked weights, or
PyTorch's default path (`F.linear`: MKL or OpenBLAS, then a separate GELU).

Neither wins everywhere (float32, 2 threads):

    the project's earlier hosts     prepacked 1.3-2.7x the default path's throughput (768 -> 3072;
                                    the most for small M)
    AMD EPYC Zen 3, AVX2 (host C)   prepacked 0.79-1.11x on bert-base's four layer GEMMs at M = 1,024;
                                    the whole encoder at 8x128 against BertModel 0.84x with it, 1.03x
                                    without (unpadded: 1.05x and 1.27x)

So the choice is measured once per machine, GEMM shape (in, out, activation) and call size: both
paths on `LARGE` rows (calls of 256 rows or more) or `SMALL` rows (fewer), in 9 interleaved turns
(`measure`: 0.2-0.9 s a large shape at bert-base's sizes, so 1-4 s for bert-base's four), on the
first inference forward that meets them; the prepacked path is taken when its median is at least
`MARGIN` shorter. The records are kept as one JSON file in the cache folder, named by a hash of the
CPU's model and flags, torch's version and the thread count, so every later process on the machine
takes the same paths (the two paths' outputs differ at float rounding) and pays only a file read.
Processes that start together take turns through a lock file. `LEANBERT_PACKED_LINEAR=1` or `0`
overrides the measurement (always prepacked where oneDNN has the op, or never);
`LEANBERT_CACHE_DIR` moves the folder (default `$XDG_CACHE_HOME/leanbert`, else `~/.cache/leanbert`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
from pathlib import Path

import torch

try:
    import fcntl
except ImportError:  # Windows: no flock; processes starting together may each measure
    fcntl = None

from leanbert.atomic_io import atomic_write_json
from leanbert.cpuinfo import first_cpu

logger = logging.getLogger(__name__)

ENV = "LEANBERT_PACKED_LINEAR"
MARGIN = 0.05  # the prepacked path must be this much faster: a noisy tie keeps the default path
SMALL, LARGE = 64, 1024  # rows timed for calls of fewer than 256 rows, and for the rest (a batch of 8 x 128)
VERSION = 2  # of the cache file's layout; a file of another version is measured again

_choices: dict[tuple, bool] = {}  # this process's decisions, by (in, out, activation, rows timed, threads, setting)


def timed_rows(rows: int) -> int:
    """The row count a call of `rows` rows is decided by: SMALL below 256 rows, else LARGE."""
    return SMALL if rows < 256 else LARGE


def shape_key(in_features: int, out_features: int, activation: str | None, rows: int) -> str:
    """A shape's name in the cache file and in benchmark records: "768x3072:gelu@1024"."""
    return f"{in_features}x{out_features}:{activation or 'none'}@{rows}"


def packed_preferred(in_features: int, out_features: int, activation: str | None = None, rows: int = LARGE) -> bool:
    """Whether PackedLinear takes its prepacked path for a call of `rows` rows of this GEMM shape
    (decided on first use; after that a dict lookup per call)."""
    memo = (in_features, out_features, activation, timed_rows(rows), torch.get_num_threads(), os.environ.get(ENV))
    choice = _choices.get(memo)
    if choice is None:
        choice = _choices[memo] = _decide(*memo[:4])
    return choice


def decisions() -> dict[str, str]:
    """This process's decisions so far, by shape name: "prepacked" or "default" (for benchmark records)."""
    named = {shape_key(*memo[:4]): "prepacked" if packed else "default" for memo, packed in _choices.items()}
    return dict(sorted(named.items()))


def forget() -> None:
    """Drop this process's decisions: the next `packed_preferred()` decides again (tests)."""
    _choices.clear()


def cache_path() -> Path:
    """The file holding this machine's measured choices."""
    root = os.environ.get("LEANBERT_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "leanbert"
    cpu = first_cpu()
    key = "|".join([platform.machine(), cpu.get("model name", ""), cpu.get("flags", cpu.get("Features", "")),
                    torch.__version__, str(torch.get_num_threads())])
    return Path(root) / f"linear_backend-{hashlib.blake2b(key.encode(), digest_size=6).hexdigest()}.json"


def _read(path: Path) -> dict:
    """{shape name: record} kept in `path`: {} when there are none, or (with a warning) when unreadable."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        logger.warning("leanbert: %s is unreadable (%s); measuring the GEMM paths again", path, error)
        return {}
    if not (isinstance(record, dict) and record.get("version") == VERSION and isinstance(record.get("shapes"), dict)):
        logger.info("leanbert: %s is of another layout; measuring the GEMM paths again", path)
        return {}
    return record["shapes"]


@contextlib.contextmanager
def _locked(path: Path):
    """Holds an exclusive lock on `path`'s lock file where the OS has flock: processes that start
    together measure one after another (their timings do not overlap) and none loses another's record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _kept_choice(shapes: dict, key: str) -> bool | None:
    """The choice recorded for `key`, or None when there is none (or it is malformed)."""
    entry = shapes.get(key)
    return entry["packed"] if isinstance(entry, dict) and isinstance(entry.get("packed"), bool) else None


def _decide(in_features: int, out_features: int, activation: str | None, rows: int) -> bool:
    setting = os.environ.get(ENV, "auto").strip().lower()
    if setting in ("0", "1"):
        return setting == "1"
    if setting != "auto":
        raise ValueError(f"{ENV}={os.environ[ENV]!r}; allowed: 1 (prepacked), 0 (default path), auto (measured once)")
    key, path = shape_key(in_features, out_features, activation, rows), cache_path()
    kept = _kept_choice(_read(path), key)
    if kept is not None:
        return kept
    entry = None
    try:
        with _locked(path):
            shapes = _read(path)  # another process may have measured it meanwhile
            kept = _kept_choice(shapes, key)
            if kept is not None:
                return kept
            logger.info("leanbert: timing oneDNN's prepacked GEMM against the default one for %s (once per machine)",
                        key)
            entry = measure(in_features, out_features, activation, rows)
            atomic_write_json(path, {"version": VERSION, "cpu": first_cpu().get("model name", platform.machine()),
                                     "torch": torch.__version__, "threads": torch.get_num_threads(),
                                     "shapes": {**shapes, key: entry}})
    except OSError as error:  # a read-only cache folder: decide again in the next process
        logger.warning("leanbert: could not keep the GEMM choice in %s (%s)", path, error)
    if entry is None:
        entry = measure(in_features, out_features, activation, rows)
    return entry["packed"]


def measure(in_features: int, out_features: int, activation: str | None, rows: int = LARGE, turns: int = 9) -> dict:
    """Median seconds of one (rows, in) x (in, out) GEMM (+ activation) by each path, and the choice."""
    from torch.nn import functional as F

    from leanbert.bench.timing import interleaved_medians
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

    with torch.inference_mode():  # one warm-up call each: first-call allocations and oneDNN's kernel choice
        times = interleaved_medians({"packed": packed, "default": default}, repeats=turns)
    packed_s, default_s = times["packed"], times["default"]
    return {"packed": packed_s < (1 - MARGIN) * default_s, "packed_seconds": packed_s, "default_seconds": default_s}
