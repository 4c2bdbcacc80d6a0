"""The fused residual add + LayerNorm against PyTorch's add and layer_norm, and the encoder's two loops."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from leanbert.modeling import add_norm
from leanbert.modeling.model import LeanBertModel
from leanbert.modeling.token_layout import TokenLayout
from tests.modeling.test_models import COMPONENTS, VOCAB, batch, tiny_config


@pytest.fixture(scope="module")
def compiled():
    if not add_norm.LIBRARY.available():
        pytest.skip("the compiled add_norm is unavailable here")


def test_builds_wherever_a_compiler_is_present():
    if os.environ.get("LEANBERT_NATIVE") == "0" or shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("the compiled kernels are turned off, or there is no C++ compiler")
    assert add_norm.LIBRARY.available()


def random_norm(width: int, bias: bool, generator: torch.Generator) -> nn.LayerNorm:
    norm = nn.LayerNorm(width, eps=1e-12 if bias else 1e-5, bias=bias)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(width, generator=generator))
        if bias:
            norm.bias.copy_(torch.randn(width, generator=generator))
    return norm


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(0, 70), width=st.integers(1, 300), bias=st.booleans(), offset=st.floats(-100, 100),
       where=st.sampled_from(["new", "over x and update", "over update, norm new", "norm only"]),
       seed=st.integers(0, 2**31 - 1))
def test_fused_pass_equals_add_then_layer_norm(compiled, rows, width, bias, offset, where, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, width, generator=generator) + offset  # a large mean: the variance must not cancel
    update = torch.randn(rows, width, generator=generator)
    norm = random_norm(width, bias, generator)
    with torch.inference_mode():
        want_sum, want_norm = add_norm.reference(x, update, norm)
        x_in, update_in = x.clone(), update.clone()
        if where == "new":
            sums, normed = torch.empty_like(x), torch.empty_like(x)
        elif where == "over x and update":
            sums, normed = x_in, update_in
        elif where == "over update, norm new":
            sums, normed = update_in, torch.empty_like(x)
        else:
            sums, normed = None, update_in
        add_norm.add_norm_(x_in, update_in, norm, norm_out=normed, sum_out=sums)
    # as close to the exact norm of the float32 sum as PyTorch's own layer_norm is (a large offset costs
    # both the same float32 digits)
    exact = torch.nn.functional.layer_norm(want_sum.double(), (width,), norm.weight.double(),
                                           norm.bias.double() if bias else None, norm.eps)
    if rows:
        ours, torchs = (normed - exact).abs().max().item(), (want_norm - exact).abs().max().item()
        assert ours <= max(2e-5, 2 * torchs), (ours, torchs)
    if sums is not None:
        torch.testing.assert_close(sums, want_sum, atol=0, rtol=0)  # one float add, as x + update


def test_refuses_mismatched_buffers_by_name(compiled):
    x, norm = torch.randn(4, 8), nn.LayerNorm(8)
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match="norm_out has shape"):
            add_norm.add_norm_(x, x.clone(), norm, norm_out=torch.empty(4, 9))
        with pytest.raises(RuntimeError, match="must be different buffers"):
            same = torch.empty_like(x)
            add_norm.add_norm_(x, x.clone(), norm, norm_out=same, sum_out=same)
        with pytest.raises(RuntimeError, match="update must be a contiguous"):
            add_norm.add_norm_(x, torch.randn(8, 4).t(), norm, norm_out=torch.empty_like(x))


def both_loops(model: LeanBertModel, *args, **kwargs):
    with torch.inference_mode():
        model.encoder.use_fused_norms = True
        fused = model(*args, **kwargs)
        model.encoder.use_fused_norms = False
        plain = model(*args, **kwargs)
    model.encoder.use_fused_norms = True
    return fused, plain


@pytest.mark.parametrize("components", COMPONENTS + [dict(norm_scheme="pre", final_norm=False)])
@pytest.mark.parametrize("unpad", [False, True])
def test_encoder_fused_loop_equals_the_plain_loop(compiled, components, unpad):
    model = LeanBertModel(tiny_config(**components)).eval()
    ids, mask = batch()
    fused, plain = both_loops(model, ids, attention_mask=mask, unpad=unpad)
    torch.testing.assert_close(fused.last_hidden_state, plain.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused.pooler_output, plain.pooler_output, atol=1e-5, rtol=1e-5)


def test_fused_loop_leaves_the_callers_input_alone_and_serves_only_eager_inference(compiled, monkeypatch):
    model = LeanBertModel(tiny_config(norm_scheme="pre", final_norm=True)).eval()
    x = torch.randn(3, 10, 32)
    before = x.clone()
    calls = []
    fused_pass = add_norm.add_norm_
    monkeypatch.setattr(add_norm, "add_norm_", lambda *a, **k: calls.append(1) or fused_pass(*a, **k))
    with torch.inference_mode():
        model.encoder(x, TokenLayout(None))
    assert torch.equal(x, before) and len(calls) == 4  # 2 layers x (attention, feed-forward)
    calls.clear()
    with torch.inference_mode():
        model.encoder(x, TokenLayout(None), output_hidden_states=True)  # needs every layer's x: plain loop
    seen = []
    handle = model.encoder.layers[1].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    with torch.inference_mode():
        model.encoder(x, TokenLayout(None))  # a hook on a layer must run: plain loop
    handle.remove()
    assert seen == [(3, 10, 32)]
    kept = []
    handle = model.encoder.layers[0].attention.block.output.register_forward_hook(
        lambda module, args, out: kept.append((out, out.clone())))
    with torch.inference_mode():
        model.encoder(x, TokenLayout(None))  # a hook that keeps a block's output must find it unchanged
    handle.remove()
    assert torch.equal(*kept[0])
    model.train()
    with torch.no_grad():
        model.encoder(x, TokenLayout(None))  # dropout is on in training: plain loop
    model.eval()
    model.encoder(x, TokenLayout(None))  # autograd records: plain loop
    assert calls == []


def test_plain_loop_serves_when_the_compiled_kernels_are_off(monkeypatch):
    monkeypatch.setattr(add_norm.LIBRARY, "ok", False)  # as after LEANBERT_NATIVE=0 or a failed build
    model = LeanBertModel(tiny_config(norm_scheme="pre", final_norm=True)).eval()
    ids = torch.randint(1000, VOCAB, (2, 6))
    with torch.inference_mode():
        out = model(ids).last_hidden_state
    assert out.shape == (2, 6, 32) and torch.isfinite(out).all()
    assert not model.encoder._fused_norms_apply(torch.zeros(2, 6, 32), model.encoder._sub_layers())
