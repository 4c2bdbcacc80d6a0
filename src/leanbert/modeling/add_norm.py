"""Residual add + LayerNorm in one pass, written over buffers the encoder owns (CPU float32 inference).

    h = x + u,    n = LayerNorm(h) = (h - mean(h)) / sqrt(var(h) + eps) * gamma + beta     (per token)

Every residual sub-layer ends in this pair: pre-LN keeps h (the residual stream) and feeds n to the
next sub-layer; post-LN keeps n only. Apart, the add reads x and u and writes a new h, and the norm
reads h and writes a new n: seven row-sized transfers per token, two of them reads-for-ownership of
the new buffers. `csrc/add_norm.cpp` does it in one pass per row (the row stays in L1), writing h
over x and n over u, whose lines the pass has just read: four transfers. Same FLOPs (~8 H per
token). Measured on this project's 2-core CPU, 1,024 tokens of 768 inside the 1x11 model (two
profiles): 0.32-0.46 ms a call against 0.56-0.77 ms for the add then the norm, so the forward spends
12-17 ms in them instead of 19-26 ms.

`reference` is the plain PyTorch path (PyTorch's own add and layer_norm); `fast_path_applies` says
when the compiled one may serve instead (eager float32 CPU inference, contiguous tensors, a norm with
a weight); tests compare the two. Built on first use (`native_build.NativeOps`); without a compiler,
or with LEANBERT_NATIVE=0, the encoder takes its plain loop.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from leanbert.modeling.fast_path import eager_float32_cpu_inference
from leanbert.modeling.native_build import NativeOps

LIBRARY = NativeOps("add_norm", Path(__file__).with_name("csrc") / "add_norm.cpp", "PyTorch's add and layer_norm")


def reference(x: torch.Tensor, update: torch.Tensor, norm: nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, n) = (x + update, norm(x + update)), new tensors."""
    h = x + update
    return h, norm(h)


def fast_path_applies(x: torch.Tensor, norms: list[nn.Module]) -> bool:
    """Whether `add_norm_` may serve for tokens like x (..., H) and every one of these norms."""
    return (eager_float32_cpu_inference(x) and x.is_contiguous() and LIBRARY.available()
            and all(isinstance(norm, nn.LayerNorm) and norm.weight is not None and len(norm.normalized_shape) == 1
                    and norm.weight.dtype == torch.float32 for norm in norms))


def add_norm_(x: torch.Tensor, update: torch.Tensor, norm: nn.LayerNorm, norm_out: torch.Tensor,
              sum_out: torch.Tensor | None = None) -> None:
    """Writes norm(x + update) into norm_out and, given sum_out, x + update into it.

    sum_out may be x or update, norm_out update or a new buffer, never sum_out itself. Check
    `fast_path_applies` first; all of x, update, sum_out and norm_out are (..., H) contiguous float32.
    """
    if not LIBRARY.available():  # else torch.ops would fail with an AttributeError that names no cause
        raise RuntimeError("leanbert's compiled add_norm is unavailable here (LEANBERT_NATIVE=0, no compiler or a "
                           "failed build); add_norm.reference serves instead")
    torch.ops.leanbert_add_norm.add_norm_(x, update, norm.weight, norm.bias, norm.eps, sum_out, norm_out)
