"""MEGA's damped EMA: the FFT convolution against the Toeplitz reference and against the recurrence itself."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from leanbert.modeling.attention.ema import DampedEMA, convolve_fft, convolve_reference


def _ema(hidden, ndim, bidirectional, seed=0):
    torch.manual_seed(seed)
    return DampedEMA(hidden, ndim, bidirectional, nn.SiLU()).double()


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 3), length=st.integers(1, 70), hidden=st.integers(1, 6), bidirectional=st.booleans(),
       seed=st.integers(0, 2**16))
def test_fft_convolution_equals_the_toeplitz_reference(batch, length, hidden, bidirectional, seed):
    generator = torch.Generator().manual_seed(seed)
    channels = 2 * hidden if bidirectional else hidden
    x = torch.randn(batch, length, hidden, generator=generator, dtype=torch.float64)
    kernel = torch.randn(channels, length, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(convolve_fft(x, kernel, bidirectional), convolve_reference(x, kernel, bidirectional),
                               atol=1e-10, rtol=1e-10)


def _recurrence(ema: DampedEMA, x: torch.Tensor) -> torch.Tensor:
    """h_t = alpha beta x_t + (1 - alpha delta) h_{t-1};  y_t = eta . h_t / sqrt(N), forward (and backward)."""
    hidden, ndim = ema.hidden_size, ema.ema_size
    alpha, delta = torch.sigmoid(ema.damping), torch.sigmoid(ema.decay)  # (C, N)

    def scan(inputs, part):  # inputs (B, L, H)
        a, d = alpha[part], delta[part]
        beta, eta = ema.expansion[part], ema.projection[part]
        state = inputs.new_zeros(inputs.shape[0], hidden, ndim)
        out = []
        for t in range(inputs.shape[1]):
            state = a * beta * inputs[:, t, :, None] + (1 - a * d) * state
            out.append((state * eta).sum(-1) / math.sqrt(ndim))
        return torch.stack(out, dim=1)

    y = scan(x, slice(0, hidden))
    if ema.bidirectional:
        y = y + scan(x.flip(1), slice(hidden, 2 * hidden)).flip(1)
    return y


def test_the_ema_is_the_damped_recurrence_both_ways():
    for bidirectional in (False, True):
        ema = _ema(hidden=4, ndim=3, bidirectional=bidirectional)
        x = torch.randn(2, 11, 4, dtype=torch.float64)
        expected = nn.functional.silu(_recurrence(ema, x) + x * ema.residual_weight)
        torch.testing.assert_close(ema(x), expected, atol=1e-12, rtol=1e-10)


def test_padded_positions_add_nothing_to_real_ones():
    ema = _ema(hidden=3, ndim=2, bidirectional=True)
    x = torch.randn(1, 9, 3, dtype=torch.float64)
    mask = torch.tensor([[True] * 6 + [False] * 3])
    noisy = x.clone()
    noisy[:, 6:] = 100.0
    torch.testing.assert_close(ema(x, mask)[:, :6], ema(noisy, mask)[:, :6])
    torch.testing.assert_close(ema(x, mask)[:, :6], ema(x[:, :6]))  # as if the row were alone


def test_low_precision_inputs_run_the_fft_in_float32():
    ema = DampedEMA(4, 2, True, nn.SiLU())
    x = torch.randn(2, 7, 4)
    out = ema.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


@settings(max_examples=25, deadline=None)
@given(length=st.integers(1, 300), bidirectional=st.booleans(), seed=st.integers(0, 2**16))
def test_the_blocked_kernel_equals_the_direct_sum_of_powers(length, bidirectional, seed):
    ema = _ema(hidden=3, ndim=4, bidirectional=bidirectional, seed=seed)
    alpha = torch.sigmoid(ema.damping)
    q = 1 - alpha * torch.sigmoid(ema.decay)  # (C, N)
    lags = torch.arange(length, dtype=torch.float64)
    direct = ((alpha * ema.expansion * ema.projection).unsqueeze(-1) * q.unsqueeze(-1) ** lags).sum(1) / 2.0
    torch.testing.assert_close(ema.kernel(length), direct, atol=1e-12, rtol=1e-9)
