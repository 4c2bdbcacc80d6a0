"""The FFF forward pass as a PyTorch C++ extension, compiled on first use for the host CPU.

`csrc/fff_forward.cpp` computes exactly what the numba forward (`fff_kernel.numba_forward`)
computes, and returns the same five tensors; its header says how it spends memory traffic. Over
the numba kernels it adds what numba cannot express: vector code with the machine's widest
registers, routing level by level over blocks of tokens whose inputs stay in L2, non-temporal
output stores (so that the weights stay in cache), PyTorch's own thread pool with dynamic chunks
(no second OpenMP runtime competes for the cores), and a small pool that recycles large output
buffers (a fresh 25 MB output costs ~6,000 page faults, more than the kernels). Measured at
T = 8192, W = 768, D = 11 on 2 cores, interleaved: 1.38-1.51x faster than the numba forward on
one host, 1.30-1.40x on another (each call after a dense layer, so with cold weights).

Building needs a C++ compiler and `ninja` (a dependency); the first call compiles (~20 s here)
into PyTorch's extension cache (`TORCH_EXTENSIONS_DIR`), later processes load the built library.
`LEANBERT_NATIVE=0` turns the extension off. When it cannot be built, `available()` is False,
a warning says why once, and the numba kernels serve instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import subprocess
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "fff_forward.cpp"
_state: dict[str, object] = {}


def _cpu_tag() -> str:
    """A short tag for this CPU's instruction set: the build uses -march=native, so a library built
    on one CPU must not be loaded on another that shares the cache directory."""
    flags = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags += line
                break
    except OSError:
        pass
    return hashlib.blake2b(flags.encode(), digest_size=4).hexdigest()


def _build() -> None:
    from torch.utils import cpp_extension

    cpp_extension.load(
        name=f"leanbert_fff_{_cpu_tag()}",
        sources=[str(SOURCE)],
        extra_cflags=["-O3", "-march=native", "-fopenmp"],
        extra_ldflags=["-fopenmp"],
        is_python_module=False,
        verbose=False,
    )


def available() -> bool:
    """Whether the compiled forward can run here; builds it on the first call."""
    if "ok" not in _state:
        if os.environ.get("LEANBERT_NATIVE", "1") == "0":
            _state["ok"] = False
        else:
            try:
                logger.info("loading leanbert's compiled FFF forward (built once per machine, ~20 s)")
                _build()
                _state["ok"] = True
            except (RuntimeError, OSError, ImportError, subprocess.SubprocessError) as error:
                # no compiler, no ninja, a failed build or load: the numba kernels serve
                logger.warning("leanbert: the compiled FFF forward is unavailable (%s); using the numba kernels", error)
                _state["ok"] = False
    return bool(_state["ok"])


def backend() -> str:
    """Which FFF forward serves here, for benchmark records: "compiled (fff_native)" or "numba"."""
    return "compiled (fff_native)" if available() else "numba"


def forward(x: torch.Tensor, w_in: torch.Tensor, b_in: torch.Tensor | None, w_out_t: torch.Tensor, depth: int, trees: int):
    """(y, rows, logits, act, order), as `fff_kernel.forward` returns them.

    x (T, W) float32 contiguous; w_in, w_out_t (K N, W) contiguous; b_in (K N,) or None.
    """
    return torch.ops.leanbert_fff.forward(x, w_in.contiguous(), b_in, w_out_t, depth, trees)
