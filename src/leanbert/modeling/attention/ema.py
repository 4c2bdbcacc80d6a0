"""MEGA's multi-dimensional damped exponential moving average (seed 003, arXiv 2209.10655, eq. 2-3).

Each of the H channels expands into N dimensions, and each dimension runs a damped EMA:

    h_t = alpha * beta * x_t + (1 - alpha * delta) * h_{t-1}      alpha, delta = sigmoid(.) in (0, 1)
    y_t = sum_n eta_n h_{t,n} / sqrt(N)

Unrolled, that is a convolution with the kernel k[l] = sum_n alpha_n beta_n q_n^l eta_n / sqrt(N),
q = 1 - alpha delta, for lags l = 0 .. L-1. An encoder runs it both ways with two kernels, forward
k1 and backward k2 (lag 0 counted by both):

    y_t = sum_{s>=0} k1[s] x_{t-s} + sum_{s>=0} k2[s] x_{t+s}
    out = act(y + omega * x)                  (omega: a per-channel residual weight)

Padded positions are zeroed before the convolution, so they add nothing to the real ones; the
residual term uses x as given. Cost per sequence: the kernel 2 C N L FLOPs as one batched matmul and
C N (B + L / B) exponentials (C = 2H both ways, H one way; B ~ sqrt(L)), O(C L) memory; the
convolution by FFT (the fast path) O(H L log L) FLOPs and O(H L) memory, by the Toeplitz matrix
(`convolve_reference`, the plain path the tests compare with) O(H L^2). At L = 16,384, H = 768, N = 32
the kernel written as one (C, N, L) tensor of powers would be 3.2 GB and 800 M exponentials.
"""

from __future__ import annotations

import math

import torch
from scipy.fft import next_fast_len
from torch import nn


class DampedEMA(nn.Module):
    """x (B, L, H), mask (B, L) bool or None -> act(EMA(x masked) + omega x), (B, L, H)."""

    def __init__(self, hidden_size: int, ema_size: int, bidirectional: bool, act: nn.Module):
        super().__init__()
        self.hidden_size, self.ema_size, self.bidirectional = hidden_size, ema_size, bidirectional
        channels = 2 * hidden_size if bidirectional else hidden_size  # forward kernels, then backward ones
        self.damping = nn.Parameter(torch.zeros(channels, ema_size))  # alpha = sigmoid(damping)
        self.decay = nn.Parameter(torch.zeros(channels, ema_size))  # delta = sigmoid(decay)
        self.expansion = nn.Parameter(torch.zeros(channels, ema_size))  # beta
        self.projection = nn.Parameter(torch.zeros(channels, ema_size))  # eta
        self.residual_weight = nn.Parameter(torch.zeros(hidden_size))  # omega
        self.act = act
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """MEGA's initialisation: alpha, delta logits ~ N(0, 0.2); beta ~ +-1 + N(0, 0.02), alternating
        over the N dimensions; eta, omega ~ N(0, 1)."""
        nn.init.normal_(self.damping, std=0.2)
        nn.init.normal_(self.decay, std=0.2)
        signs = torch.ones(self.ema_size)
        signs[1::2] = -1.0
        nn.init.normal_(self.expansion, std=0.02)
        self.expansion.add_(signs)
        nn.init.normal_(self.projection, std=1.0)
        nn.init.normal_(self.residual_weight, std=1.0)

    def kernel(self, length: int) -> torch.Tensor:
        """(C, L): k[c, l] = sum_n alpha beta q^l eta / sqrt(N), C = 2H (forward, then backward) or H.

        With l = j B + i (B ~ sqrt(L)), q^l = q^(jB) q^i, so row c of k, folded to (L/B, B), is the
        product of a (L/B, N) matrix of w q^(jB) (w = alpha beta eta / sqrt(N)) and an (N, B) one of q^i.
        """
        alpha = torch.sigmoid(self.damping)  # (C, N)
        log_q = torch.log(1.0 - alpha * torch.sigmoid(self.decay))  # (C, N); q in (0, 1)
        weight = alpha * self.expansion * self.projection * math.sqrt(1.0 / self.ema_size)  # (C, N)
        block = max(1, math.isqrt(length))
        blocks = -(-length // block)
        steps = torch.arange(max(block, blocks), device=log_q.device, dtype=log_q.dtype)
        within = _exp_or_zero(log_q.unsqueeze(-1) * steps[:block])  # (C, N, B): q^i
        across = weight.unsqueeze(1) * _exp_or_zero(log_q.unsqueeze(1) * (block * steps[:blocks]).unsqueeze(-1))  # (C, L/B, N)
        return torch.bmm(across, within).flatten(1)[:, :length]  # (C, L/B, B) -> (C, L)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        length = x.shape[1]
        inputs = x if mask is None else x * mask.unsqueeze(-1).to(x.dtype)  # (B, L, H), padding -> 0
        y = convolve_fft(inputs, self.kernel(length), self.bidirectional)  # (B, L, H)
        return self.act(y + x * self.residual_weight)


def _exp_or_zero(exponent: torch.Tensor) -> torch.Tensor:
    """exp, with powers below e^-40 (4e-18) exactly 0: the far lags of a fast-decaying dimension would
    otherwise be denormal floats, each costing a microcode assist (exp over a 4,096-token kernel took
    45x longer), and the products of two such powers in the matmul likewise."""
    return torch.where(exponent < -40.0, 0.0, torch.exp(exponent.clamp(min=-40.0)))


def _split(kernel: torch.Tensor, bidirectional: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not bidirectional:
        return kernel, None
    hidden = kernel.shape[0] // 2
    return kernel[:hidden], kernel[hidden:]  # (H, L) each


def convolve_fft(x: torch.Tensor, kernel: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """The EMA convolution through one FFT: x (B, L, H), kernel (C, L) -> (B, L, H).

    The two kernels become one two-sided kernel over lags -(L-1) .. L-1, so that y is the linear
    convolution's window [L-1, 2L-1); an FFT of n >= 3L - 2 points makes the circular convolution linear
    (n a product of small primes: an n with a large prime factor, such as 3L - 2 often has, is ~10x slower).
    """
    batch, length, hidden = x.shape
    forward, backward = _split(kernel, bidirectional)
    two_sided = forward.new_zeros(hidden, 2 * length - 1)  # (H, 2L-1): lag s at column s + L - 1
    two_sided[:, length - 1:] = forward
    if backward is not None:
        two_sided[:, : length] += backward.flip(-1)  # lag -s at column L - 1 - s
    n = next_fast_len(3 * length - 2, real=True)
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32  # FFTs need these
    x_f = torch.fft.rfft(x.to(dtype), n=n, dim=1)  # (B, n/2 + 1, H)
    k_f = torch.fft.rfft(two_sided.to(dtype), n=n, dim=-1).transpose(0, 1)  # (n/2 + 1, H)
    y = torch.fft.irfft(x_f * k_f, n=n, dim=1)  # (B, n, H)
    return y[:, length - 1: 2 * length - 1].to(x.dtype)


def convolve_reference(x: torch.Tensor, kernel: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """The plain path: y_t = sum_s T[t, s] x_s with T[t, s] = k1[t - s] (t >= s) + k2[s - t] (s >= t)."""
    length = x.shape[1]
    forward, backward = _split(kernel, bidirectional)
    position = torch.arange(length, device=x.device)
    lag = position.unsqueeze(1) - position.unsqueeze(0)  # (L, L): t - s
    toeplitz = torch.where(lag >= 0, forward[:, lag.clamp(min=0)], 0.0)  # (H, L, L)
    if backward is not None:
        toeplitz = toeplitz + torch.where(lag <= 0, backward[:, (-lag).clamp(min=0)], 0.0)
    return torch.einsum("hts,bsh->bth", toeplitz, x)
