"""Conditional CPU kernels for the fast feed-forward layer: only the visited neurons are read.

Every token x_t (width W) walks each tree k (N = 2^(D+1) - 1 nodes, heap order) from the
root, one node per level d = 0..D; r is the node's row in the layer's stacked weights:

    r_{t,k,0} = k N,   l_{t,k,d} = w_in[r] . x_t + b_in[r],   next node 2n+1 + [l > 0]
    y_t = sum_{k,d} GELU(l_{t,k,d}) * w_out_t[r]

The backward pass, with g_t = dL/dy_t, a = GELU(l) and g_l = GELU'(l) * (g_t . w_out_t[r]):

    dL/dx_t = sum_{k,d} g_l w_in[r]      dL/dw_in[r] += g_l x_t      dL/db_in[r] += g_l
    dL/dw_out_t[r] += a g_t

`w_out_t` is `linear_out.weight` transposed to (K N, W), so that a neuron's output weights are
one contiguous row, like its input weights.

Cost per token: V = K (D+1) dot products and V axpys of length W, i.e. 4 V W FLOPs forward and
about twice that backward, against 4 K N W for the same layer evaluated densely (341x fewer at
D = 11). Memory: the routing record, (T, V) row ids and (T, V) logits; the backward writes dense
(K N, W) weight gradients, because optimisers expect dense `.grad`.

`forward` hands the forward pass to the compiled C++ version in `fff_native` when it could be
built (same tensors out, tested against `numba_forward`); the backward always runs here.

The kernels are numba-compiled (and cached on disk) and parallel over tokens, except the
weight-gradient kernel, which is parallel over column blocks so that threads never write the
same memory and the sum over tokens keeps a fixed order (bitwise reproducible). GELU and its
derivative run in PyTorch between the kernels (vectorised there, and identical to the reference
path's for identical logits). Only float32 is compiled.
"""

from __future__ import annotations

import os

import numba
import numpy as np
import torch
import torch.nn.functional as F
from numba import njit, prange
from torch.autograd.function import once_differentiable

from leanbert.modeling.ffn import fff_native

# `reassoc` lets LLVM split a dot product over SIMD lanes and `contract` lets it fuse
# multiply-adds; without them the reduction runs one scalar add at a time (measured ~4x
# slower). No `nnan`/`ninf`/`afn`: NaN and inf propagate as in PyTorch. The kernels proper
# keep fastmath off; they call these helpers, and LLVM inlines them with their flags kept.
_SIMD = {"reassoc", "contract"}


@njit(fastmath=_SIMD, cache=True)
def _dot4(x0, w0, x1, w1, x2, w2, x3, w3):
    """Four independent dot products in one loop: (W,) x 8 -> 4 scalars."""
    s0 = np.float32(0.0)
    s1 = np.float32(0.0)
    s2 = np.float32(0.0)
    s3 = np.float32(0.0)
    for i in range(x0.shape[0]):
        s0 += x0[i] * w0[i]
        s1 += x1[i] * w1[i]
        s2 += x2[i] * w2[i]
        s3 += x3[i] * w3[i]
    return s0, s1, s2, s3


@njit(fastmath=_SIMD, cache=True)
def _dot_shared4(a, r0, r1, r2, r3):
    """One vector against four rows, loading `a` once: (W,) x 5 -> 4 scalars."""
    s0 = np.float32(0.0)
    s1 = np.float32(0.0)
    s2 = np.float32(0.0)
    s3 = np.float32(0.0)
    for i in range(a.shape[0]):
        ai = a[i]
        s0 += ai * r0[i]
        s1 += ai * r1[i]
        s2 += ai * r2[i]
        s3 += ai * r3[i]
    return s0, s1, s2, s3


@njit(fastmath=_SIMD, cache=True)
def _dot(a, b):
    s = np.float32(0.0)
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


@njit(fastmath=_SIMD, cache=True)
def _set4(y, c0, r0, c1, r1, c2, r2, c3, r3):
    """y = c0 r0 + c1 r1 + c2 r2 + c3 r3, all (W,): one pass over y instead of four."""
    for j in range(y.shape[0]):
        y[j] = c0 * r0[j] + c1 * r1[j] + c2 * r2[j] + c3 * r3[j]


@njit(fastmath=_SIMD, cache=True)
def _add4(y, c0, r0, c1, r1, c2, r2, c3, r3):
    for j in range(y.shape[0]):
        y[j] += c0 * r0[j] + c1 * r1[j] + c2 * r2[j] + c3 * r3[j]


@njit(fastmath=_SIMD, cache=True)
def _add1(y, c, r):
    for j in range(y.shape[0]):
        y[j] += c * r[j]


@njit(parallel=True, cache=True)
def _route_kernel(x, w_in, b_in, n_nodes, n_levels, rows, logits):
    """Walk every tree for every token.

    x (T, W); w_in (K N, W); b_in (K N,) -> rows (T, K L) int64 (row in w_in), logits (T, K L),
    column v = k L + d holding tree k, level d.
    """
    n_tokens = x.shape[0]
    n_trees = rows.shape[1] // n_levels
    # Four tokens walk in lockstep: each level's row address depends on the previous dot
    # product, so a lone token stalls on that latency; four independent chains hide it.
    for group in prange((n_tokens + 3) // 4):
        t0 = 4 * group
        t1 = min(t0 + 1, n_tokens - 1)  # a short last group repeats its last token
        t2 = min(t0 + 2, n_tokens - 1)
        t3 = min(t0 + 3, n_tokens - 1)
        for k in range(n_trees):
            root = k * n_nodes
            n0 = n1 = n2 = n3 = 0
            for d in range(n_levels):
                r0 = root + n0
                r1 = root + n1
                r2 = root + n2
                r3 = root + n3
                l0, l1, l2, l3 = _dot4(x[t0], w_in[r0], x[t1], w_in[r1], x[t2], w_in[r2], x[t3], w_in[r3])
                l0 += b_in[r0]
                l1 += b_in[r1]
                l2 += b_in[r2]
                l3 += b_in[r3]
                v = k * n_levels + d
                rows[t0, v] = r0
                rows[t1, v] = r1
                rows[t2, v] = r2
                rows[t3, v] = r3
                logits[t0, v] = l0
                logits[t1, v] = l1
                logits[t2, v] = l2
                logits[t3, v] = l3
                # strictly positive goes right; 0 (and NaN) goes left, as in the reference
                n0 = 2 * n0 + (2 if l0 > 0 else 1)
                n1 = 2 * n1 + (2 if l1 > 0 else 1)
                n2 = 2 * n2 + (2 if l2 > 0 else 1)
                n3 = 2 * n3 + (2 if l3 > 0 else 1)


@njit(fastmath=_SIMD, cache=True)
def _combine_shared4(y0, y1, y2, y3, first, w0, w1, w2, w3, c0, c1, c2, c3):
    """Four tokens on the same four rows: y_i (+)= c0[i] w0 + c1[i] w1 + c2[i] w2 + c3[i] w3, all (W,).

    c0..c3 are 4-tuples (one coefficient per token). Each row chunk is loaded once for four
    tokens, and each y once per four rows.
    """
    a0, a1, a2, a3 = c0
    b0, b1, b2, b3 = c1
    d0, d1, d2, d3 = c2
    e0, e1, e2, e3 = c3
    if first:  # y is uninitialised: never read it (0 * NaN would leak in)
        for j in range(y0.shape[0]):
            p, q, r, s = w0[j], w1[j], w2[j], w3[j]
            y0[j] = a0 * p + b0 * q + d0 * r + e0 * s
            y1[j] = a1 * p + b1 * q + d1 * r + e1 * s
            y2[j] = a2 * p + b2 * q + d2 * r + e2 * s
            y3[j] = a3 * p + b3 * q + d3 * r + e3 * s
    else:
        for j in range(y0.shape[0]):
            p, q, r, s = w0[j], w1[j], w2[j], w3[j]
            y0[j] += a0 * p + b0 * q + d0 * r + e0 * s
            y1[j] += a1 * p + b1 * q + d1 * r + e1 * s
            y2[j] += a2 * p + b2 * q + d2 * r + e2 * s
            y3[j] += a3 * p + b3 * q + d3 * r + e3 * s


@njit(cache=True)
def _combine_one(src, r, c, y, v):
    """y (+)= sum_{u >= v} c[u] src[r[u]]:  r/c (V,), y (W,); y is set, not read, when v == 0."""
    n_visits = r.shape[0]
    if v == 0:
        if n_visits >= 4:
            _set4(y, c[0], src[r[0]], c[1], src[r[1]], c[2], src[r[2]], c[3], src[r[3]])
            v = 4
        else:
            y[:] = 0
    # four rows per pass: y is read and written once per four rows, not once per row
    while v + 4 <= n_visits:
        _add4(y, c[v], src[r[v]], c[v + 1], src[r[v + 1]], c[v + 2], src[r[v + 2]], c[v + 3], src[r[v + 3]])
        v += 4
    while v < n_visits:
        _add1(y, c[v], src[r[v]])
        v += 1


@njit(parallel=True, cache=True)
def _combine_rows_kernel(src, rows, coef, order, out):
    """out[t] = sum_v coef[t, v] src[rows[t, v]]:  src (R, W), rows/coef (T, V), order (T,) -> out (T, W).

    Serves the forward output (src = w_out_t, coef = GELU(l)) and the input gradient
    (src = w_in, coef = g_l).
    """
    n_tokens = rows.shape[0]
    n_visits = rows.shape[1]
    # Tokens go in groups of four neighbours in `order` (sorted by leaf), which share the top of
    # their path (about 10 of 12 levels at T = 8192, D = 11): each shared row is read once for
    # the four of them (measured ~1.3x over token by token, single-threaded).
    for group in prange((n_tokens + 3) // 4):
        i = 4 * group
        if i + 4 > n_tokens:  # a short last group: token by token
            for j in range(i, n_tokens):
                t = order[j]
                _combine_one(src, rows[t], coef[t], out[t], 0)
            continue
        t0, t1, t2, t3 = order[i], order[i + 1], order[i + 2], order[i + 3]
        r0, r1, r2, r3 = rows[t0], rows[t1], rows[t2], rows[t3]
        c0, c1, c2, c3 = coef[t0], coef[t1], coef[t2], coef[t3]
        shared = 0
        while shared < n_visits and r0[shared] == r1[shared] and r0[shared] == r2[shared] and r0[shared] == r3[shared]:
            shared += 1
        v = 0
        while v + 4 <= shared:
            _combine_shared4(
                out[t0], out[t1], out[t2], out[t3], v == 0,
                src[r0[v]], src[r0[v + 1]], src[r0[v + 2]], src[r0[v + 3]],
                (c0[v], c1[v], c2[v], c3[v]), (c0[v + 1], c1[v + 1], c2[v + 1], c3[v + 1]),
                (c0[v + 2], c1[v + 2], c2[v + 2], c3[v + 2]), (c0[v + 3], c1[v + 3], c2[v + 3], c3[v + 3]),
            )
            v += 4
        _combine_one(src, r0, c0, out[t0], v)
        _combine_one(src, r1, c1, out[t1], v)
        _combine_one(src, r2, c2, out[t2], v)
        _combine_one(src, r3, c3, out[t3], v)


@njit(cache=True)
def _counting_order(key, n_keys):
    """Token order sorted by key (stable):  key (T,) int64 in [0, n_keys) -> (T,) int64."""
    starts = np.zeros(n_keys + 1, np.int64)
    for t in range(key.shape[0]):
        starts[key[t] + 1] += 1
    for k in range(n_keys):
        starts[k + 1] += starts[k]
    order = np.empty(key.shape[0], np.int64)
    for t in range(key.shape[0]):
        order[starts[key[t]]] = t
        starts[key[t]] += 1
    return order


@njit(parallel=True, cache=True)
def _row_dots_kernel(g, src, rows, out):
    """out[t, v] = g[t] . src[rows[t, v]]:  g (T, W), src (R, W), rows (T, V) -> out (T, V)."""
    n_visits = rows.shape[1]
    for t in prange(g.shape[0]):
        gt = g[t]
        r = rows[t]
        v = 0
        while v + 4 <= n_visits:
            out[t, v], out[t, v + 1], out[t, v + 2], out[t, v + 3] = _dot_shared4(
                gt, src[r[v]], src[r[v + 1]], src[r[v + 2]], src[r[v + 3]]
            )
            v += 4
        while v < n_visits:
            out[t, v] = _dot(gt, src[r[v]])
            v += 1


@njit(parallel=True, cache=True)
def _weight_grads_kernel(x, g, rows, g_logit, act, order, n_blocks, grad_w_in, grad_w_out_t):
    """grad_w_in[r] += g_logit x_t and grad_w_out_t[r] += act g_t over all visits (t, v).

    x, g (T, W); rows, g_logit, act (T, V); order (T,) token order; grad_w_in, grad_w_out_t
    (R, W), zero on entry.
    """
    width = x.shape[1]
    n_visits = rows.shape[1]
    # Each thread owns a block of columns of every row: no two threads write the same float,
    # so there are no races, no per-thread copies of the (R, W) gradients to reduce, and the
    # sum over tokens runs in a fixed order. Blocks are multiples of 16 floats (a cache line).
    block = ((width + n_blocks - 1) // n_blocks + 15) // 16 * 16
    for b in prange(n_blocks):
        c0 = b * block
        c1 = min(width, c0 + block)
        if c0 >= c1:
            continue
        for i in range(order.shape[0]):
            t = order[i]
            xs = x[t, c0:c1]
            gs = g[t, c0:c1]
            for v in range(n_visits):
                r = rows[t, v]
                _add1(grad_w_in[r, c0:c1], g_logit[t, v], xs)
                _add1(grad_w_out_t[r, c0:c1], act[t, v], gs)


# The process that started numba's thread pool, and the pool's kind. A GNU OpenMP pool does not
# survive fork(): a child that launches a kernel is killed ("fork() called from a process already
# using GNU OpenMP"), e.g. a DataLoader worker. Such children must use another path.
_pool_owner: tuple[int, str] | None = None


def usable() -> bool:
    """Whether this process may launch the kernels (False in a fork of a process that has)."""
    return _pool_owner is None or _pool_owner[0] == os.getpid() or _pool_owner[1] != "omp"


def _use_torch_threads() -> int:
    """Run numba's parallel loops on as many threads as PyTorch uses (capped by numba's pool)."""
    global _pool_owner
    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    if _pool_owner is None:  # get_num_threads() above has started the pool
        _pool_owner = (os.getpid(), numba.threading_layer())
    return n


def _as_array(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def route(x: torch.Tensor, w_in: torch.Tensor, b_in: torch.Tensor | None, depth: int, trees: int):
    """Rows and logits of the visited neurons.

    x (T, W) float32 contiguous; w_in (K N, W); b_in (K N,) or None
    -> rows (T, K (D+1)) int64 (row in w_in, tree-major), logits (T, K (D+1)) float32.
    """
    n_levels = depth + 1
    n_nodes = 2**n_levels - 1
    if b_in is None:
        b_in = w_in.new_zeros(w_in.shape[0])
    rows = torch.empty(x.shape[0], trees * n_levels, dtype=torch.int64)
    logits = torch.empty(x.shape[0], trees * n_levels, dtype=torch.float32)
    if x.shape[0]:
        _use_torch_threads()
        _route_kernel(_as_array(x), _as_array(w_in), _as_array(b_in), n_nodes, n_levels, rows.numpy(), logits.numpy())
    return rows, logits


def path_order(rows: torch.Tensor, depth: int) -> torch.Tensor:
    """Tokens sorted (stably) by the leaf they reach in the first tree: rows (T, V) -> (T,) int64.

    Neighbours in this order share most of their path, so the rows they read are still in cache.
    """
    n_nodes = 2 ** (depth + 1) - 1
    return torch.from_numpy(_counting_order(rows[:, depth].numpy(), n_nodes))


def combine_rows(src: torch.Tensor, rows: torch.Tensor, coef: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """out[t] = sum_v coef[t, v] src[rows[t, v]]:  src (R, W), rows/coef (T, V), order (T,) -> (T, W)."""
    out = torch.empty(rows.shape[0], src.shape[1], dtype=src.dtype)
    if rows.shape[0]:
        _use_torch_threads()
        _combine_rows_kernel(
            _as_array(src), rows.numpy(), _as_array(coef).astype(np.float32, copy=False), order.numpy(), out.numpy()
        )
    return out


def forward(x, w_in, b_in, w_out_t, depth: int, trees: int):
    """y (T, W) plus what the backward needs: rows, logits and activations, each (T, K (D+1)),
    and the token order of `path_order`.

    The compiled C++ forward (`fff_native`) when it is available here, else `numba_forward`;
    both return the same tensors (tests/modeling/ffn/test_fff_native.py).
    """
    if fff_native.available():
        return fff_native.forward(x, w_in, b_in, w_out_t, depth, trees)
    return numba_forward(x, w_in, b_in, w_out_t, depth, trees)


def numba_forward(x, w_in, b_in, w_out_t, depth: int, trees: int):
    """`forward` with the numba kernels.

    Three passes (route, GELU, combine) rather than one fused kernel: each pass then streams only
    one of the two (K N, W) weight matrices through the cache, which measured ~10% faster at
    T = 8192, W = 768, D = 11 with tokens spread over all leaves.
    """
    rows, logits = route(x, w_in, b_in, depth, trees)
    act = F.gelu(logits)  # PyTorch's GELU: the same activation values as the reference path
    order = path_order(rows, depth)
    return combine_rows(w_out_t, rows, act, order), rows, logits, act, order


def backward(grad_y, x, w_in, w_out_t, rows, logits, act, order, has_bias: bool, need_x: bool = True, need_weights: bool = True):
    """Gradients for x (T, W), w_in (R, W), b_in (R,) and w_out_t (R, W); None where not needed.

    `order` is the forward's token order (`path_order`).
    """
    grad_y = grad_y.contiguous()
    n_threads = _use_torch_threads()
    g_act = torch.empty_like(logits)
    if rows.shape[0]:
        _row_dots_kernel(_as_array(grad_y), _as_array(w_out_t), rows.numpy(), g_act.numpy())
    g_logit = torch.ops.aten.gelu_backward(g_act, logits)  # GELU'(l) * g_act, as autograd does
    grad_x = combine_rows(w_in, rows, g_logit, order) if need_x else None
    grad_w_in = grad_w_out_t = grad_b_in = None
    if need_weights:
        grad_w_in = torch.zeros_like(w_in)
        grad_w_out_t = torch.zeros_like(w_out_t)
        if rows.shape[0]:
            # Tokens sorted by the leaf they reach share their paths with their neighbours, so
            # the gradient rows they update are still in cache (measured 1.2-2.5x at T = 8192, D = 11).
            _weight_grads_kernel(
                _as_array(x), _as_array(grad_y), rows.numpy(), g_logit.numpy(), _as_array(act), order.numpy(),
                n_threads, grad_w_in.numpy(), grad_w_out_t.numpy(),
            )
        if has_bias:
            grad_b_in = torch.zeros(w_in.shape[0], dtype=w_in.dtype).index_add_(0, rows.reshape(-1), g_logit.reshape(-1))
    return grad_x, grad_w_in, grad_b_in, grad_w_out_t


class FFFKernelFunction(torch.autograd.Function):
    """Autograd wrapper: y = FFF(x), with gradients computed by the conditional kernels.

    Inputs: x (T, W) float32 contiguous, w_in (R, W), b_in (R,) or None, w_out (W, R) (the
    parameter, which receives the gradient), w_out_t (R, W) (its contiguous transpose, which the
    kernels read), depth, trees. Output: y (T, W).
    """

    @staticmethod
    def forward(ctx, x, w_in, b_in, w_out, w_out_t, depth, trees):
        y, rows, logits, act, order = forward(x, w_in, b_in, w_out_t, depth, trees)
        ctx.save_for_backward(x, w_in, w_out_t, rows, logits, act, order)
        ctx.has_bias = b_in is not None
        return y

    @staticmethod
    @once_differentiable  # the kernels are not differentiable: double backward fails rather than drop terms
    def backward(ctx, grad_y):
        x, w_in, w_out_t, rows, logits, act, order = ctx.saved_tensors
        need = ctx.needs_input_grad  # (x, w_in, b_in, w_out, ...)
        grad_x, grad_w_in, grad_b_in, grad_w_out_t = backward(
            grad_y, x, w_in, w_out_t, rows, logits, act, order, ctx.has_bias, need_x=need[0], need_weights=any(need[1:4])
        )
        # (R, W) -> (W, R) view; autograd copies it into the parameter's layout when it accumulates
        grad_w_out = grad_w_out_t.t() if grad_w_out_t is not None else None
        return grad_x, grad_w_in, grad_b_in, grad_w_out, None, None, None
