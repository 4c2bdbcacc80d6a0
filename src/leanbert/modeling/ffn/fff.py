"""Fast feed-forward (FFF) layer of UltraFastBERT (Belcak & Wattenhofer, 2023, "Exponentially
Faster Language Modelling"), exact: hard routing in training as in inference.

K parallel binary trees of depth D, each with N = 2^(D+1) - 1 GELU neurons in heap order
(leaves are neurons too). Neuron n of tree k is row r = k N + n of `linear_in` and column r of
`linear_out`. A token x starts at every root, and at each node computes

    l_r = w_in[r] . x + b_in[r],   then moves to child 2n+2 if l_r > 0, else to 2n+1,

visiting D+1 nodes per tree. The output sums the visited neurons only:

    y = sum_{k} sum_{n on the path of x in tree k} GELU(l_{kN+n}) W_out[:, kN+n]

Gradients flow through the visited neurons' activations and `linear_out` columns only; the
routing decision itself has no gradient.

Cost per token: the conditional paths cost 4 K (D+1) W FLOPs forward; the reference path
computes all K N logits, 2 K N W + 2 K N W FLOPs (the mask zeroes all but K (D+1) of them).
With K = 1, D = 11 that is 12 neurons of 4095. Memory: parameters K N (2W + 1); activations
(T, K (D+1)) logits and node ids per call, against (T, K N) for the reference path. No sequence
length dependence: tokens are independent.

Three implementations sit side by side and are picked once, by `impl`:
  "reference"  all logits, then route and mask, as the original layer does (readable; the
               parity baseline the tests use);
  "gather"     plain PyTorch, but only visited rows: one gather per level;
  "kernel"     kernels that read only visited rows, forward and backward, for float32 on CPU
               (anything else falls back to "gather"): the forward is the compiled C++ one
               (fff_native.py, built on first use) or, where it cannot be built, numba's
               (fff_kernel.py); the backward is numba's.
"auto" is "kernel" when numba imports, otherwise "gather".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from leanbert.modeling.derived_weight import DerivedWeight
from leanbert.modeling.fast_path import eager_float32_cpu

try:
    from leanbert.modeling.ffn import fff_kernel
except ImportError:  # numba missing or broken: the PyTorch paths still work
    fff_kernel = None

IMPLS = ("auto", "reference", "gather", "kernel")


def route_from_logits(logits: torch.Tensor, depth: int) -> torch.Tensor:
    """Visited nodes from all node logits: (T, K, N) -> (T, K, D+1) int64, root first."""
    node = torch.zeros(logits.shape[:2], dtype=torch.int64, device=logits.device)  # (T, K)
    path = [node]
    for _ in range(depth):
        logit = logits.gather(2, node.unsqueeze(2)).squeeze(2)  # (T, K)
        node = 2 * node + 1 + (logit > 0).long()
        path.append(node)
    return torch.stack(path, dim=2)


def _kernel_accepts(*tensors: torch.Tensor | None) -> bool:
    """The kernels are compiled for float32 on CPU (eager, no autocast: `fast_path`), and cannot run in
    a fork of a process that used them."""
    present = [t for t in tensors if t is not None]
    return fff_kernel.usable() and all(eager_float32_cpu(t) for t in present)


class FastFeedForward(nn.Module):
    """UltraFastBERT's FFF layer: `trees` trees of depth `depth` over (..., width) inputs.

    Parameter names and shapes follow the original layer, so its checkpoints load unchanged:
    `linear_in` (K N, width) with bias (unless bias=False), `linear_out` (width, K N), no bias.
    """

    def __init__(self, width: int, depth: int, trees: int = 1, bias: bool = True, impl: str = "auto"):
        super().__init__()
        if depth < 0 or trees < 1 or width < 1:
            raise ValueError(f"FastFeedForward needs width >= 1, depth >= 0, trees >= 1; got {width=}, {depth=}, {trees=}")
        self.width, self.depth, self.trees = width, depth, trees
        self.n_nodes = 2 ** (depth + 1) - 1
        self.linear_in = nn.Linear(width, trees * self.n_nodes, bias=bias)
        self.linear_out = nn.Linear(trees * self.n_nodes, width, bias=False)
        self.reset_parameters()
        self.impl = impl
        self._w_out_t = DerivedWeight()  # linear_out.weight as contiguous rows (K N, W), for the kernels

    def reset_parameters(self) -> None:
        # The original layer's init: linear_in keeps nn.Linear's U(+-1/sqrt(width)); linear_out
        # is scaled by the K (D+1) neurons a token actually uses, not by the K N columns.
        self.linear_in.reset_parameters()
        bound = 1.0 / math.sqrt((self.depth + 1) * self.trees)
        nn.init.uniform_(self.linear_out.weight, -bound, bound)

    @property
    def impl(self) -> str:
        return self._impl

    @impl.setter
    def impl(self, name: str) -> None:
        if name not in IMPLS:
            raise ValueError(f"FastFeedForward impl {name!r} is unknown; valid: {', '.join(IMPLS)}")
        if name == "kernel" and fff_kernel is None:
            raise ValueError("FastFeedForward impl 'kernel' needs numba, which did not import; use 'gather'")
        self._impl = name
        self._resolved_impl = name if name != "auto" else ("kernel" if fff_kernel is not None else "gather")

    def extra_repr(self) -> str:
        return f"width={self.width}, depth={self.depth}, trees={self.trees}, impl={self.impl!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        impl = self._resolved_impl if self._fast_paths_apply() else "reference"
        return _IMPLEMENTATIONS[impl](self, self._rows(x)).reshape(shape)  # (T, W) -> (..., W)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """(..., W) -> (T, W), refusing any other last dimension."""
        if x.dim() == 0 or x.shape[-1] != self.width:
            raise ValueError(f"FastFeedForward of width {self.width} got an input of shape {tuple(x.shape)}; "
                             f"its last dimension must be {self.width}")
        return x.reshape(-1, self.width)

    def _fast_paths_apply(self) -> bool:
        """Gather and kernel read the two layers' weights directly, so they serve only plain
        nn.Linear layers without hooks: pruning, weight norm or a LoRA wrapper act through the
        layer's forward, which only the reference path calls."""
        return all(type(layer) is nn.Linear and not (layer._forward_hooks or layer._forward_pre_hooks)
                   for layer in (self.linear_in, self.linear_out))

    # ---- reference: all logits, then route and mask -------------------------------------------

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The original computation: (..., W) -> (..., W), evaluating every neuron."""
        shape = x.shape
        x = self._rows(x)
        logits = self.linear_in(x)  # (T, K N)
        with torch.no_grad():
            path = route_from_logits(logits.view(-1, self.trees, self.n_nodes), self.depth)  # (T, K, D+1)
            mask = torch.zeros_like(logits).view(-1, self.trees, self.n_nodes).scatter_(2, path, 1.0)
        hidden = F.gelu(logits) * mask.view_as(logits)  # (T, K N), zero off the paths
        return self.linear_out(hidden).reshape(shape)

    # ---- gather: only visited rows, plain PyTorch ---------------------------------------------

    def gather_forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., W) -> (..., W) touching only visited rows; one gather per level."""
        shape = x.shape
        x = self._rows(x)
        w_in = self.linear_in.weight  # (K N, W)
        w_out_t = self.linear_out.weight.t()  # (K N, W), a view: gradients land in linear_out
        roots = torch.arange(self.trees, device=x.device) * self.n_nodes  # (K,)
        node = torch.zeros(x.shape[0], self.trees, dtype=torch.int64, device=x.device)  # (T, K)
        y = x.new_zeros(x.shape)
        for _ in range(self.depth + 1):
            row = roots + node  # (T, K)
            logit = torch.einsum("tw,tkw->tk", x, w_in[row])  # (T, K)
            if self.linear_in.bias is not None:
                logit = logit + self.linear_in.bias[row]
            y = y + torch.einsum("tk,tkw->tw", F.gelu(logit), w_out_t[row])
            node = 2 * node + 1 + (logit.detach() > 0).long()
        return y.reshape(shape)

    # ---- kernel: numba, only visited rows, forward and backward -------------------------------

    def _kernel_forward(self, x: torch.Tensor) -> torch.Tensor:
        w_in, b_in, w_out = self.linear_in.weight, self.linear_in.bias, self.linear_out.weight
        if not _kernel_accepts(x, w_in, b_in, w_out):
            return self.gather_forward(x)
        x = x.contiguous()
        w_out_t = self._output_rows()
        needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, w_in, b_in, w_out))
        if not needs_grad:  # skip autograd bookkeeping (and the saved tensors) in inference
            return fff_kernel.forward(x, w_in, b_in, w_out_t, self.depth, self.trees)[0]
        return fff_kernel.FFFKernelFunction.apply(x, w_in, b_in, w_out, w_out_t, self.depth, self.trees)

    def _output_rows(self) -> torch.Tensor:
        """linear_out.weight as contiguous rows (K N, W), cached until the weight changes."""
        return self._w_out_t.get(self.linear_out.weight, _as_rows)

    # ---- routing ------------------------------------------------------------------------------

    @torch.no_grad()
    def visited_paths(self, x: torch.Tensor) -> torch.Tensor:
        """Nodes visited by each token: (..., W) -> (T, K, D+1) int64 node ids (per tree), root first."""
        x = self._rows(x)
        w_in, b_in = self.linear_in.weight, self.linear_in.bias
        if self._resolved_impl == "kernel" and self._fast_paths_apply() and _kernel_accepts(x, w_in, b_in):
            rows, _ = fff_kernel.route(x.contiguous(), w_in, b_in, self.depth, self.trees)
            roots = torch.arange(self.trees).unsqueeze(1) * self.n_nodes  # (K, 1)
            return rows.view(-1, self.trees, self.depth + 1) - roots
        logits = self.linear_in(x).view(-1, self.trees, self.n_nodes)
        return route_from_logits(logits, self.depth)


def _as_rows(w_out: torch.Tensor) -> torch.Tensor:
    return w_out.t().contiguous()  # (W, K N) -> (K N, W)


_IMPLEMENTATIONS = {
    "reference": FastFeedForward.reference_forward,
    "gather": FastFeedForward.gather_forward,
    "kernel": FastFeedForward._kernel_forward,
}
