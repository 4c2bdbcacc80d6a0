"""The compiled C++ FFF forward against the numba forward and the reference path.

`fff_kernel.forward` takes the compiled forward when it is available, so test_fff.py's "kernel"
tests run it end to end; here the two backends are compared directly, output by output, so
that the numba forward (the fallback) stays covered too.
"""

from __future__ import annotations

import os
import platform
import shutil

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from leanbert.modeling.ffn import fff

pytestmark = pytest.mark.skipif(fff.fff_kernel is None, reason="numba is not available")

if fff.fff_kernel is not None:
    from leanbert.modeling.ffn import fff_kernel, fff_native

from tests.modeling.ffn.test_fff import golden, golden_layer, make_layer, routing_margin  # noqa: F401


def test_builds_wherever_a_compiler_is_present():
    if os.environ.get("LEANBERT_NATIVE") == "0" or shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("the compiled forward is turned off, or there is no C++ compiler")
    assert fff_native.available()


def backends(layer, x, native=None):
    """(numba, native) forwards of `layer` on x (T, W): each (y, rows, logits, act, order).
    `native`: the compiled forward to compare (`fff_native.forward` by default)."""
    if native is None:
        if not fff_native.available():
            pytest.skip("the compiled forward is unavailable here")
        native = fff_native.forward
    w_in = layer.linear_in.weight.detach()
    b_in = layer.linear_in.bias.detach() if layer.linear_in.bias is not None else None
    w_out_t = layer.linear_out.weight.detach().t().contiguous()
    args = (x.contiguous(), w_in, b_in, w_out_t, layer.depth, layer.trees)
    return fff_kernel.numba_forward(*args), native(*args)


def assert_backends_agree(layer, x, native=None):
    (y, rows, logits, act, order), (y_n, rows_n, logits_n, act_n, order_n) = backends(layer, x, native)
    assert torch.equal(rows_n, rows)
    assert torch.equal(order_n, order)  # the same stable leaf order
    torch.testing.assert_close(logits_n, logits, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(act_n, act, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(y_n, y, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(y_n, layer.reference_forward(x), atol=1e-6, rtol=1e-5)


def assert_backends_agree_on_random_tokens(layer, tokens, seed):
    """assert_backends_agree on `tokens` random inputs; skipped when a logit sits within float32 noise of 0."""
    x = torch.randn(tokens, layer.width, generator=torch.Generator().manual_seed(seed))
    if routing_margin(layer, x) <= 1e-5:
        pytest.skip("a logit within float32 noise of 0")
    assert_backends_agree(layer, x)


@settings(max_examples=60, deadline=None)
@given(
    # two-vector passes (16 or 32 floats), a single vector (8 or 16) after them, a scalar tail
    width=st.sampled_from([1, 5, 8, 16, 24, 31, 32, 33, 40, 48, 64, 80, 100]),
    depth=st.integers(0, 6),
    trees=st.integers(1, 4),
    # groups of four and a short last group; past 64, several chunks of groups and a short last chunk
    tokens=st.one_of(st.integers(0, 41), st.integers(60, 140)),
    bias=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_native_matches_numba_and_reference(width, depth, trees, tokens, bias, seed):
    layer = make_layer(width, depth, trees, seed, bias)
    x = torch.randn(tokens, width, generator=torch.Generator().manual_seed(seed + 1))
    assume(routing_margin(layer, x) > 1e-5)
    assert_backends_agree(layer, x)


@pytest.fixture(scope="module")
def plain_forward():
    """The compiled forward built again without AVX (-march=x86-64: 4-float vectors, the path ARM
    hosts take), under its own operator namespace; x86-64 hosts with a compiler only."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the plain build is checked on x86-64 hosts (elsewhere the native build is the plain one)")
    if os.environ.get("LEANBERT_NATIVE") == "0" or shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("the compiled forward is turned off, or there is no C++ compiler")
    fff_native.LIBRARY.build(march="x86-64", defines=("LEANBERT_FFF_OPS=leanbert_fff_plain",), tag="plain_test")
    return torch.ops.leanbert_fff_plain.forward


@pytest.mark.parametrize(
    "width, depth, trees, tokens",
    [(5, 3, 2, 7), (24, 11, 1, 700), (33, 4, 3, 203), (100, 2, 1, 1001), (8, 0, 1, 1), (16, 5, 2, 0), (768, 11, 1, 300)],
)
def test_plain_vector_width_matches_numba_and_reference(plain_forward, width, depth, trees, tokens):
    """The 4-float build: two-vector passes, single vectors, scalar tails, subtrees, pieces."""
    layer = make_layer(width, depth, trees, seed=width + depth, bias=True)
    x = torch.randn(tokens, width, generator=torch.Generator().manual_seed(tokens))
    if tokens and routing_margin(layer, x) <= 1e-5:
        pytest.skip("a logit within float32 noise of 0")
    assert_backends_agree(layer, x, native=plain_forward)


@pytest.mark.parametrize("tokens", [4, 64, 203])
def test_tokens_sharing_whole_paths(tokens):
    """Few leaves for many tokens: the combine's shared-row branch does most of the work."""
    assert_backends_agree_on_random_tokens(make_layer(40, depth=3, trees=2, seed=tokens), tokens, seed=5)


@pytest.mark.parametrize("trees", [1, 3])
def test_deep_trees_route_by_subtree(trees):
    """Depth 11, UltraFastBERT's: the route's bottom half walks 64 subtrees per tree, 0 to 84 tokens each."""
    assert_backends_agree_on_random_tokens(make_layer(24, depth=11, trees=trees, seed=trees), 700, seed=3)


@pytest.mark.parametrize("depth, trees", [(0, 1), (2, 1), (2, 3)])
def test_large_subtrees_are_cut_into_pieces(depth, trees):
    """Shallow trees: each subtree holds far more than T / (4 threads) tokens, so the bottom half
    walks it in pieces (of a length that is not a multiple of 4) handed to different threads."""
    assert_backends_agree_on_random_tokens(make_layer(24, depth=depth, trees=trees, seed=depth + trees), 1001, seed=4)


def test_zero_logits_go_left():
    layer = make_layer(32, depth=4, trees=2, seed=0)
    with torch.no_grad():
        layer.linear_in.weight.zero_()
        layer.linear_in.bias.zero_()
    _, (_, rows, _, _, _) = backends(layer, torch.randn(3, 32))
    left_spine = [0, 1, 3, 7, 15]
    assert rows.tolist() == [left_spine + [31 + n for n in left_spine]] * 3


@pytest.mark.parametrize("tag", ["p1", "p4"])
def test_numba_forward_matches_golden(golden, tag):  # noqa: F811
    """The fallback forward alone reproduces the original layer's outputs."""
    layer = golden_layer(golden, tag, "kernel")
    x = golden["inputs"]["x_64x32"]
    w_out_t = layer.linear_out.weight.detach().t().contiguous()
    y = fff_kernel.numba_forward(x, layer.linear_in.weight.detach(), layer.linear_in.bias.detach(), w_out_t,
                                 layer.depth, layer.trees)[0]
    torch.testing.assert_close(y, golden["outputs"][f"{tag}.x_64x32.y"], atol=1e-6, rtol=1e-5)


def test_bad_shapes_are_refused():
    if not fff_native.available():
        pytest.skip("the compiled forward is unavailable here")
    w = torch.randn(7, 8)
    with pytest.raises(RuntimeError, match="w_in has shape"):
        fff_native.forward(torch.randn(3, 8), torch.randn(6, 8), None, w, 2, 1)
    with pytest.raises(RuntimeError, match="x must be a contiguous float32"):
        fff_native.forward(torch.randn(3, 8, dtype=torch.float64), w, None, w, 2, 1)


def test_recycled_outputs_never_alias_live_ones():
    """Large outputs come from a recycling pool: a live output is never handed out again."""
    layer = make_layer(512, depth=3, trees=1, seed=4)
    x = torch.randn(1024, 512, generator=torch.Generator().manual_seed(6))  # 2 MB outputs: pooled

    def native(inputs):
        return backends(layer, inputs)[1][0]

    fff_native.release_buffers()  # whatever earlier tests left in the pool
    y1 = native(x)
    kept = y1.clone()
    outputs = [native(2 * x) for _ in range(3)]  # more calls while y1 is alive
    ptrs = {y.data_ptr() for y in outputs}
    assert len(ptrs) == 3 and y1.data_ptr() not in ptrs
    assert torch.equal(y1, kept)
    del outputs  # their buffers go back to the pool...
    again = native(x)
    assert again.data_ptr() in ptrs  # ...and one is taken again, and filled with the right values
    torch.testing.assert_close(again, kept)


def test_the_pool_keeps_few_recent_buffers():
    """At most 4 buffers and 128 MB wait; the oldest go first, and a larger output is not kept."""
    layer = make_layer(64, depth=1, trees=1, seed=5)

    def native(tokens):
        return backends(layer, torch.randn(tokens, 64))[1][0]

    fff_native.release_buffers()
    outputs = [native(4096 * (1 + i)) for i in range(6)]  # 1, 2, ... 6 MB, all alive at once
    del outputs  # six buffers returned: the two returned first are evicted
    assert fff_native.release_buffers() == 4
    big = native(600_000)  # 154 MB
    del big
    assert fff_native.release_buffers() == 0
    assert fff_native.release_buffers() == 0


def test_turned_off_the_numba_forward_serves(monkeypatch):
    """LEANBERT_NATIVE=0 (or a failed build) leaves the kernel path on the numba forward."""
    monkeypatch.setattr(fff_native.LIBRARY, "ok", None)
    monkeypatch.setenv("LEANBERT_NATIVE", "0")
    assert not fff_native.available()
    layer = make_layer(24, depth=4, trees=2, seed=8)
    layer.impl = "kernel"
    x = torch.randn(9, 24, generator=torch.Generator().manual_seed(9))
    if routing_margin(layer, x) <= 1e-5:
        pytest.skip("a logit within float32 noise of 0")
    torch.testing.assert_close(layer(x), layer.reference_forward(x), atol=1e-6, rtol=1e-5)


def test_a_failed_build_is_reported_and_falls_back(monkeypatch, caplog):
    def broken_build():
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.setattr(fff_native.LIBRARY, "ok", None)
    monkeypatch.delenv("LEANBERT_NATIVE", raising=False)
    monkeypatch.setattr(fff_native.LIBRARY, "build", broken_build)
    assert not fff_native.available()
    assert "Ninja is required" in caplog.text and "numba" in caplog.text
