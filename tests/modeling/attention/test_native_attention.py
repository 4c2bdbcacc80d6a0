"""The compiled attention forward against SDPA (the reference path), and when each one serves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from leanbert import LeanBertModel
from leanbert.config import LeanBertConfig
from leanbert.modeling.attention import native
from leanbert.modeling.attention.full import FullAttention
from leanbert.modeling.token_layout import TokenLayout


def needs_native():
    if not native.available():
        pytest.skip("the compiled attention is unavailable here (no compiler, or no AVX-512)")


@pytest.fixture
def native_calls(monkeypatch) -> dict[str, int]:
    """How many calls each compiled entry point served: a parity test means nothing if SDPA served both sides."""
    calls = {"forward": 0, "forward_unpadded": 0}
    for name in calls:
        def counted(*args, name=name, kernel=getattr(native, name)):
            calls[name] += 1
            return kernel(*args)
        monkeypatch.setattr(native, name, counted)
    return calls


def make_attention(heads: int, head_dim: int, seed: int = 0) -> FullAttention:
    torch.manual_seed(seed)
    config = LeanBertConfig(hidden_size=heads * head_dim, num_attention_heads=heads, intermediate_size=4,
                            num_hidden_layers=1, vocab_size=8, attention_probs_dropout_prob=0.1)
    return FullAttention(config).eval()


def test_builds_wherever_a_compiler_is_present():
    if os.environ.get("LEANBERT_NATIVE") == "0" or shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("compiled kernels are turned off, or there is no C++ compiler")
    assert native.LIBRARY.available()


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 3),
    # one token, a part of a 16 x 16 transpose, a part of a 32-key tile, several tiles and a tail
    length=st.one_of(st.integers(1, 40), st.integers(60, 140)),
    heads=st.integers(1, 3),
    head_dim=st.sampled_from([32, 64, 96]),
    masked=st.booleans(),
    scale=st.sampled_from([0.1, 1.0, 4.0]),  # 4: scores of ~100, most far below the row maximum
    seed=st.integers(0, 2**31 - 1),
)
def test_native_matches_sdpa(batch, length, heads, head_dim, masked, scale, seed):
    needs_native()
    layer = make_attention(heads, head_dim)
    gen = torch.Generator().manual_seed(seed)
    qkv = torch.randn(batch, length, 3 * heads * head_dim, generator=gen) * scale
    mask = None
    if masked:
        mask = torch.rand(batch, length, generator=gen) > 0.4
        mask[torch.arange(batch), torch.randint(length, (batch,), generator=gen)] = True  # >= 1 key per row
    with torch.inference_mode():
        expected = layer.reference_context(qkv, mask)
        got = native.forward(qkv, heads, mask)
    # float32 rounding of a score is ~1e-7 of it (q.k grows as scale^2) and moves the output by that
    # relative amount of V (scale): the tolerance grows with scale^3
    tolerance = 1e-5 * max(1.0, scale) ** 3
    torch.testing.assert_close(got, expected, atol=tolerance, rtol=1e-5)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_many_tasks_in_chunks_each_run_once(threads):
    """161 (sequence, head) tasks: the threads claim them in chunks of several (with a partial last one), and
    every task's context is computed once and lands in its own rows, in both layouts."""
    needs_native()
    heads, head_dim, batch, length = 7, 32, 23, 29
    layer = make_attention(heads, head_dim)
    gen = torch.Generator().manual_seed(5)
    qkv = torch.randn(batch, length, 3 * heads * head_dim, generator=gen)
    mask = torch.rand(batch, length, generator=gen) > 0.3
    mask[:, 0] = True
    mask[4] = False  # an empty sequence among the others
    layout = TokenLayout(mask, unpadded=True)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            expected = layer.reference_context(qkv, mask)
            got = native.forward(qkv, heads, mask)
            got_unpadded = native.forward_unpadded(layout.unpad(qkv), heads, layout.offsets)
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(got[mask], expected[mask], atol=1e-5, rtol=1e-5)
    assert torch.equal(got[4], torch.zeros(length, heads * head_dim))
    unpadded_expected = layout.unpad(layer.reference_context(layout.pad(layout.unpad(qkv)), mask))
    torch.testing.assert_close(got_unpadded, unpadded_expected, atol=1e-5, rtol=1e-5)


def test_a_query_with_no_key_gets_a_zero_context():
    needs_native()
    qkv = torch.randn(2, 5, 3 * 64)
    mask = torch.tensor([[True, True, False, False, False], [False] * 5])
    out = native.forward(qkv, 1, mask)
    assert torch.equal(out[1], torch.zeros(5, 64))
    torch.testing.assert_close(out[0], make_attention(1, 64).reference_context(qkv[:1], mask[:1])[0],
                               atol=1e-5, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 4),
    length=st.one_of(st.integers(1, 40), st.integers(90, 128)),
    heads=st.integers(1, 3),
    head_dim=st.sampled_from([32, 64]),
    keep=st.sampled_from([0.0, 0.3, 0.8, 1.0]),  # 0: sequences with no token at all
    seed=st.integers(0, 2**31 - 1),
)
def test_unpadded_layout_matches_the_padded_batch(batch, length, heads, head_dim, keep, seed):
    """Any mask (holes, left padding, empty sequences): the kernel on the real tokens alone gives what it
    gives on the padded batch at the real positions."""
    needs_native()
    gen = torch.Generator().manual_seed(seed)
    qkv = torch.randn(batch, length, 3 * heads * head_dim, generator=gen)
    mask = torch.rand(batch, length, generator=gen) < keep
    layout = TokenLayout(mask, unpadded=True)
    with torch.inference_mode():
        padded = native.forward(qkv, heads, mask)
        unpadded = native.forward_unpadded(layout.unpad(qkv), heads, layout.offsets)
    assert unpadded.shape == (int(mask.sum()), heads * head_dim)
    torch.testing.assert_close(unpadded, padded[mask], atol=1e-5, rtol=1e-5)


def test_unpadded_layers_never_build_the_grid(monkeypatch):
    needs_native()
    layer = make_attention(heads=2, head_dim=32)
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    layout = TokenLayout(mask, unpadded=True)
    x = torch.randn(10, 64)
    with torch.inference_mode():
        expected = layer(x, layout)
        monkeypatch.setattr(TokenLayout, "pad", lambda *args: pytest.fail("the (B, L) grid was built"))
        torch.testing.assert_close(layer(x, layout), expected)


@pytest.mark.parametrize("unpadded", [False, True])
def test_layer_in_inference_matches_its_reference_path(unpadded, native_calls):
    needs_native()
    layer = make_attention(heads=4, head_dim=32, seed=3)
    mask = torch.ones(3, 37, dtype=torch.bool)
    mask[1, 20:] = False
    mask[2, 5:] = False
    layout = TokenLayout(mask, unpadded=unpadded)
    x = torch.randn(3, 37, 128)
    if unpadded:
        x = layout.unpad(x)
    served = {"forward": int(not unpadded), "forward_unpadded": int(unpadded)}
    with torch.inference_mode():
        fast = layer(x, layout)
        assert native_calls == served
        layer.use_native = False
        reference = layer(x, layout)
    assert native_calls == served  # the reference call took SDPA
    real = slice(None) if unpadded else mask
    torch.testing.assert_close(fast[real], reference[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("unpad", [False, True])
@pytest.mark.parametrize("head_dim", [32, 64])
def test_model_in_inference_matches_its_reference_path(head_dim, unpad, native_calls):
    """The whole encoder on a padded batch: every layer's attention on the compiled kernel, then on SDPA."""
    needs_native()
    torch.manual_seed(0)
    config = LeanBertConfig(vocab_size=50, hidden_size=2 * head_dim, num_attention_heads=2, intermediate_size=64,
                            num_hidden_layers=2, max_position_embeddings=64)
    model = LeanBertModel(config).eval()
    input_ids = torch.randint(50, (3, 23))
    attention_mask = torch.ones(3, 23, dtype=torch.long)
    attention_mask[1, 15:] = 0
    attention_mask[2, 4:] = 0
    attentions = [m for m in model.modules() if isinstance(m, FullAttention)]
    assert len(attentions) == config.num_hidden_layers
    served = {"forward": 0, "forward_unpadded": 0}
    served["forward_unpadded" if unpad else "forward"] = config.num_hidden_layers
    with torch.inference_mode():
        fast = model(input_ids, attention_mask=attention_mask, unpad=unpad).last_hidden_state
        assert native_calls == served
        for attention in attentions:
            attention.use_native = False
        reference = model(input_ids, attention_mask=attention_mask, unpad=unpad).last_hidden_state
    assert native_calls == served  # the reference run took SDPA
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("part", ["q", "k", "v"])
def test_nan_and_inf_reach_the_outputs_sdpa_gives_them(part, value):
    """A NaN or +inf score (from NaN or inf in q or k) makes its query row NaN, and NaN or inf in v reaches every
    row that reads it: the kernel hides nothing SDPA shows. Sequence 1's poisoned token is padding, which SDPA still reads (it adds
    the mask to the scores), so the padded layout propagates it and the unpadded one never sees it."""
    needs_native()
    heads, head_dim = 2, 32
    hidden = heads * head_dim
    layer = make_attention(heads, head_dim)
    qkv = torch.randn(2, 37, 3 * hidden, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 37, dtype=torch.bool)
    mask[1, 25:] = False
    column = "qkv".index(part) * hidden
    qkv[0, 5, column + head_dim + 3] = value  # sequence 0, a real token, head 1
    qkv[1, 30, column + 7] = value  # sequence 1, a padded token, head 0
    layout = TokenLayout(mask, unpadded=True)
    with torch.inference_mode():
        expected = layer.reference_context(qkv, mask)
        got = native.forward(qkv, heads, mask)
        expected_unpadded = layout.unpad(layer.reference_context(layout.pad(layout.unpad(qkv)), mask))
        got_unpadded = native.forward_unpadded(layout.unpad(qkv), heads, layout.offsets)
    assert not expected_unpadded.isfinite().all()  # the case is not vacuous
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5, equal_nan=True)
    torch.testing.assert_close(got_unpadded, expected_unpadded, atol=1e-5, rtol=1e-5, equal_nan=True)


def test_training_and_gradients_take_sdpa(monkeypatch):
    """No backward, no dropout, other dtypes or head sizes, sequences past MAX_LENGTH: SDPA serves."""
    def refuse(*args):
        raise AssertionError("the compiled attention served a call it cannot serve")

    monkeypatch.setattr(native, "forward", refuse)
    layer = make_attention(heads=2, head_dim=32)
    x = torch.randn(2, 9, 64, requires_grad=True)
    layer(x, TokenLayout(None)).sum().backward()  # eval, but recording gradients
    assert x.grad is not None
    with torch.no_grad():
        layer.train()(x, TokenLayout(None))  # dropout 0.1 in training mode
        layer.eval().to(torch.float64)(x.double(), TokenLayout(None))
    with torch.no_grad():
        make_attention(heads=2, head_dim=16)(torch.randn(2, 9, 32), TokenLayout(None))  # head size 16
        make_attention(heads=2, head_dim=32)(torch.randn(1, native.MAX_LENGTH + 1, 64), TokenLayout(None))


def test_bad_inputs_are_refused():
    needs_native()
    with pytest.raises(RuntimeError, match="contiguous float32"):
        native.forward(torch.randn(2, 3, 192, dtype=torch.float64), 1, None)
    with pytest.raises(RuntimeError, match="multiple of 32"):
        native.forward(torch.randn(2, 3, 96), 2, None)  # heads of 16
    with pytest.raises(RuntimeError, match="key_mask must be"):
        native.forward(torch.randn(2, 3, 192), 1, torch.ones(2, 4, dtype=torch.bool))
    qkv = torch.randn(5, 192)
    with pytest.raises(RuntimeError, match="offsets must be a contiguous int64"):
        native.forward_unpadded(qkv, 1, torch.tensor([0, 5], dtype=torch.int32))
    with pytest.raises(RuntimeError, match=r"offsets must run from 0 to T = 5, got 0 \.\. 4"):
        native.forward_unpadded(qkv, 1, torch.tensor([0, 4]))
    with pytest.raises(RuntimeError, match=r"must not decrease, but offsets\[2\] = 2 < offsets\[1\] = 3"):
        native.forward_unpadded(qkv, 1, torch.tensor([0, 3, 2, 5]))
    with pytest.raises(RuntimeError, match=r"qkv must be a contiguous float32 CPU tensor \(T, 3 C\)"):
        native.forward_unpadded(torch.randn(1, 5, 192), 1, torch.tensor([0, 5]))


@pytest.mark.parametrize(("call", "shape"), [
    ("native.forward(torch.randn(1, 3, 96), 1, None)", (1, 3, 32)),
    ("native.forward_unpadded(torch.randn(3, 96), 1, torch.tensor([0, 3]))", (3, 32)),
])
def test_entry_points_load_the_library_first(call, shape):
    """In a fresh process (the library built and cached by now), an entry point is the first thing called."""
    needs_native()
    script = f"import torch\nfrom leanbert.modeling.attention import native\nprint(tuple({call}.shape))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == str(shape)


def test_entry_points_say_when_the_kernel_is_unavailable(monkeypatch):
    monkeypatch.setattr(native, "available", lambda: False)
    with pytest.raises(RuntimeError, match="compiled attention kernel is unavailable"):
        native.forward(torch.randn(1, 3, 96), 1, None)
    with pytest.raises(RuntimeError, match="compiled attention kernel is unavailable"):
        native.forward_unpadded(torch.randn(3, 96), 1, torch.tensor([0, 3]))


def test_turned_off_sdpa_serves(monkeypatch):
    monkeypatch.setattr(native.LIBRARY, "ok", None)
    monkeypatch.setenv("LEANBERT_NATIVE", "0")
    assert not native.available() and native.backend() == "sdpa"
    layer = make_attention(heads=2, head_dim=32)
    with torch.inference_mode():
        out = layer(torch.randn(2, 9, 64), TokenLayout(None))
    assert out.shape == (2, 9, 64)
