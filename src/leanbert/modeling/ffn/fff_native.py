"""The FFF forward pass as a PyTorch C++ extension, compiled on first use for the host CPU.

`csrc/fff_forward.cpp` computes exactly what the numba forward (`fff_kernel.numba_forward`)
computes, and returns the same five tensors; its header says how it spends memory traffic. Over
the numba kernels it adds what numba cannot express: vector code with the machine's widest
registers, routing in two halves with the bottom half in subtree order (each subtree's rows are
read once), non-temporal output stores (so that the weights stay in cache), PyTorch's own thread
pool with dynamic chunks (no second OpenMP runtime competes for the cores), and a small pool that
recycles large output buffers (a fresh 25 MB output costs ~6,000 page faults, more than the
kernels; at most 4 and 128 MB wait, `release_buffers()` frees them). Measured at T = 8192, W = 768, D = 11 on 2 cores, interleaved, each call after a dense
layer (so with cold weights): 1.38-1.51x faster than the numba forward on one host, 1.30-1.40x on
another before the two-half route and 1.56-1.66x after it.

Built on first use (~20 s here) by `native_build.NativeOps`; `LEANBERT_NATIVE=0` turns it off.
When it cannot be built, `available()` is False, a warning says why once, and the numba kernels
serve instead.
"""

from __future__ import annotations

from pathlib import Path

import torch

from leanbert.modeling.native_build import NativeOps

LIBRARY = NativeOps("fff", Path(__file__).with_name("csrc") / "fff_forward.cpp", "the numba kernels")


def available() -> bool:
    """Whether the compiled forward can run here; builds it on the first call."""
    return LIBRARY.available()


def backend() -> str:
    """Which FFF forward serves here, for benchmark records: "compiled (fff_native)" or "numba"."""
    return "compiled (fff_native)" if available() else "numba"


def release_buffers() -> int:
    """Frees the output buffers the compiled forward keeps for reuse (at most 4, 128 MB in all), as
    `torch.cuda.empty_cache` does for CUDA; returns how many were freed. 0 when it is unavailable."""
    return torch.ops.leanbert_fff.release_buffers() if available() else 0


def forward(x: torch.Tensor, w_in: torch.Tensor, b_in: torch.Tensor | None, w_out_t: torch.Tensor, depth: int, trees: int):
    """(y, rows, logits, act, order), as `fff_kernel.forward` returns them.

    x (T, W) float32 contiguous; w_in, w_out_t (K N, W) contiguous; b_in (K N,) or None.
    """
    return torch.ops.leanbert_fff.forward(x, w_in.contiguous(), b_in, w_out_t, depth, trees)
