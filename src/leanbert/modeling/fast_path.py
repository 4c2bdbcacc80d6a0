"""When a hand-written CPU path may stand in for the plain PyTorch one.

The compiled FFF kernels, the prepacked GEMMs (`packed_linear`) and the compiled attention
(`attention/native`) are float32 CPU code. They serve only plain eager float32 work: not under
autocast (the plain ops would run in bfloat16 there, so the fast path would change the numbers),
and not while torch.compile or torch.jit traces the model (an opaque prepacked weight or custom op
cannot be lowered, and a trace would freeze the path's shape checks as constants). The GEMM and
attention paths have no backward, so they also need autograd off.
"""

from __future__ import annotations

import torch


def tracing() -> bool:
    """Whether torch.compile, torch.export or torch.jit is tracing the model (no branch on values then)."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def eager_float32_cpu(x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
            and not tracing())


def eager_float32_cpu_inference(x: torch.Tensor) -> bool:
    return eager_float32_cpu(x) and not torch.is_grad_enabled()
