"""FastFeedForward: golden parity with UltraFastBERT's FFF layer, and fast paths vs the reference path.

The golden tensors come from the original layer (see MANIFEST.md beside them). The property tests
drive the conditional paths ("kernel", "gather") and the reference path with the same weights and
compare outputs, visited paths and every gradient.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.nn.utils import prune

from leanbert.modeling.ffn import fff
from leanbert.modeling.ffn.fff import FastFeedForward, route_from_logits

FIXTURES = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures" / "ultrafastbert_fff_layer"
FAST_IMPLS = ["gather"] + (["kernel"] if fff.fff_kernel is not None else [])
INPUTS = ["x_4x32", "x_2x5x32", "x_64x32"]


@pytest.fixture(scope="module")
def golden():
    if not FIXTURES.is_dir():
        pytest.skip(f"golden fixture folder {FIXTURES} is absent")
    from safetensors.torch import load_file

    return {name: load_file(FIXTURES / f"{name}.safetensors") for name in ("model", "inputs", "outputs")}


def golden_layer(golden, tag: str, impl: str) -> FastFeedForward:
    trees = {"p1": 1, "p4": 4}[tag]
    layer = FastFeedForward(32, depth=3, trees=trees, impl=impl)
    state = {k.removeprefix(f"{tag}."): v for k, v in golden["model"].items() if k.startswith(f"{tag}.")}
    layer.load_state_dict(state, strict=True)  # the original parameter names load unchanged
    return layer.train()


@pytest.mark.parametrize("impl", ["reference", *FAST_IMPLS])
@pytest.mark.parametrize("name", INPUTS)
@pytest.mark.parametrize("tag", ["p1", "p4"])
def test_golden_parity(golden, tag, name, impl):
    layer = golden_layer(golden, tag, impl)
    x = golden["inputs"][name]
    out = golden["outputs"]

    y = layer(x)
    torch.testing.assert_close(y, out[f"{tag}.{name}.y"], atol=1e-6, rtol=1e-5)
    assert torch.equal(layer.visited_paths(x), out[f"{tag}.{name}.path_nodes"])

    (y * out[f"{tag}.{name}.grad_probe_R"]).sum().backward()
    for pname, param in layer.named_parameters():
        expected = out[f"{tag}.{name}.grad.{pname}"]
        # gradients are sums over up to 64 tokens of values up to ~20: compare at float32 noise
        torch.testing.assert_close(param.grad, expected, atol=1e-5, rtol=1e-5, msg=f"grad of {pname}")


def test_golden_reference_forward_matches_forward(golden):
    layer = golden_layer(golden, "p4", "kernel" if "kernel" in FAST_IMPLS else "gather")
    x = golden["inputs"]["x_2x5x32"]
    torch.testing.assert_close(layer(x), layer.reference_forward(x), atol=1e-6, rtol=1e-5)


# ---- fast paths vs the reference path --------------------------------------------------------


def make_layer(width, depth, trees, seed, bias=True):
    torch.manual_seed(seed)
    layer = FastFeedForward(width, depth, trees, bias=bias, impl="reference")
    if bias:
        with torch.no_grad():
            layer.linear_in.bias.normal_(0.0, 0.3)
    return layer


def run(layer, impl, x, probe):
    """Output, visited paths and gradients (input first, then parameters) of sum(y * probe)."""
    layer.impl = impl
    layer.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    y = layer(x)
    (y * probe).sum().backward()
    grads = [x.grad] + [p.grad if p.grad is not None else torch.zeros_like(p) for p in layer.parameters()]
    return y.detach(), layer.visited_paths(x.detach()), grads


def routing_margin(layer, x):
    """Smallest non-zero |logit| on the visited paths, in float64 (how far routing is from a flip)."""
    x = x.reshape(-1, layer.width).double()
    bias = layer.linear_in.bias.double() if layer.linear_in.bias is not None else 0.0
    logits = (x @ layer.linear_in.weight.double().T + bias).view(-1, layer.trees, layer.n_nodes)
    path = route_from_logits(logits, layer.depth)
    on_path = logits.gather(2, path).abs()
    on_path = on_path[on_path > 0]
    return on_path.min().item() if on_path.numel() else float("inf")


def assert_same(layer, x, impl):
    probe = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    y_ref, path_ref, grads_ref = run(layer, "reference", x, probe)
    y, path, grads = run(layer, impl, x, probe)
    assert y.shape == x.shape
    assert path.shape == (x.numel() // layer.width, layer.trees, layer.depth + 1)
    assert torch.equal(path, path_ref)
    torch.testing.assert_close(y, y_ref, atol=1e-6, rtol=1e-5)
    names = ["x"] + [n for n, _ in layer.named_parameters()]
    for name, g, g_ref in zip(names, grads, grads_ref):
        torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-5, msg=f"grad of {name}")
    return path


shapes = st.fixed_dictionaries(
    {
        "width": st.integers(1, 48),
        "depth": st.integers(0, 6),
        "trees": st.integers(1, 4),
        "lead": st.lists(st.integers(0, 9), min_size=1, max_size=2),  # leading dims; 0 = no tokens
        "bias": st.booleans(),
        "seed": st.integers(0, 2**31 - 1),
    }
)


@pytest.mark.parametrize("impl", FAST_IMPLS)
@settings(max_examples=40, deadline=None)
@given(shape=shapes)
def test_fast_matches_reference(impl, shape):
    layer = make_layer(shape["width"], shape["depth"], shape["trees"], shape["seed"], shape["bias"])
    x = torch.randn(*shape["lead"], shape["width"], generator=torch.Generator().manual_seed(shape["seed"] + 1))
    # float32 dot products in another order may flip a logit within ~1e-6 of zero; exact ties
    # are covered by test_ties_go_left
    assume(routing_margin(layer, x) > 1e-5)
    assert_same(layer, x, impl)


@pytest.mark.parametrize("impl", FAST_IMPLS)
@settings(max_examples=25, deadline=None)
@given(
    depth=st.integers(1, 6),
    trees=st.integers(1, 3),
    tokens=st.integers(1, 12),
    data=st.data(),
)
def test_ties_go_left(impl, depth, trees, tokens, data):
    """A logit of exactly 0 goes left (child 2n+1), like the reference's strict `> 0`."""
    width = 8
    layer = make_layer(width, depth, trees, seed=data.draw(st.integers(0, 2**31 - 1)))
    n_rows = trees * layer.n_nodes
    tied = data.draw(st.lists(st.integers(0, n_rows - 1), min_size=1, max_size=n_rows, unique=True))
    with torch.no_grad():  # a zero weight row and zero bias give a logit of exactly 0 for every token
        layer.linear_in.weight[tied] = 0.0
        layer.linear_in.bias[tied] = 0.0
    x = torch.randn(tokens, width, generator=torch.Generator().manual_seed(3))
    assume(routing_margin(layer, x) > 1e-5)
    path = assert_same(layer, x, impl)
    tied = set(tied)
    for t in range(tokens):
        for k in range(trees):
            for d in range(depth):
                node = path[t, k, d].item()
                if k * layer.n_nodes + node in tied:
                    assert path[t, k, d + 1].item() == 2 * node + 1


@pytest.mark.parametrize("impl", FAST_IMPLS)
def test_all_zero_logits_walk_the_left_spine(impl):
    layer = make_layer(6, depth=4, trees=2, seed=0)
    with torch.no_grad():
        layer.linear_in.weight.zero_()
        layer.linear_in.bias.zero_()
    layer.impl = impl
    path = layer.visited_paths(torch.randn(3, 6))
    assert path.tolist() == [[[0, 1, 3, 7, 15]] * 2] * 3


@pytest.mark.parametrize("impl", FAST_IMPLS)
@pytest.mark.parametrize("lead", [(1,), (0,), (2, 0), (1, 1)])
def test_one_and_zero_tokens(impl, lead):
    layer = make_layer(16, depth=5, trees=2, seed=1)
    assert_same(layer, torch.randn(*lead, 16), impl)


def kernel_layer(trees: int) -> FastFeedForward:
    if "kernel" not in FAST_IMPLS:
        pytest.skip("numba is not available")
    layer = make_layer(8, depth=3, trees=trees, seed=2)
    layer.impl = "kernel"
    return layer


def test_kernel_sees_weight_updates():
    """The kernel reads a cached transpose of linear_out.weight; in-place updates must reach it."""
    layer = kernel_layer(trees=1)
    x = torch.randn(5, 8)
    with torch.inference_mode():  # the cache is first built under inference mode...
        layer(x)
    y = layer(x)  # ...and must still be usable by autograd
    y.sum().backward()
    with torch.no_grad():
        layer.linear_out.weight.mul_(2.0)
    torch.testing.assert_close(layer(x), 2.0 * y.detach(), atol=1e-6, rtol=1e-5)
    layer.linear_out.weight = torch.nn.Parameter(torch.zeros_like(layer.linear_out.weight))
    assert layer(x).abs().max().item() == 0.0


def test_kernel_sees_new_storage_and_copies():
    """`.data` assignment (Module.half(), vector_to_parameters) and deepcopy'd layers (EMA, teachers)."""
    layer = kernel_layer(trees=2)
    x = torch.randn(5, 8)
    with torch.no_grad():
        layer(x)
        twin = copy.deepcopy(layer)
        layer.linear_out.weight.data = torch.zeros_like(layer.linear_out.weight)
        assert layer(x).abs().max().item() == 0.0
        for _ in range(4):  # the copy's version counter restarts at 0: step it past the original's
            twin.linear_out.weight.mul_(0.5)
        torch.testing.assert_close(twin(x), twin.reference_forward(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("impl", ["reference", *FAST_IMPLS])
def test_wrong_width_is_refused(impl):
    layer = make_layer(16, depth=2, trees=1, seed=0)
    layer.impl = impl
    with pytest.raises(ValueError, match=r"width 16 got an input of shape \(4, 8\)"):
        layer(torch.randn(4, 8))  # 32 values: a reshape alone would regroup them into (2, 16)


@pytest.mark.parametrize("impl", FAST_IMPLS)
def test_hooked_or_wrapped_linears_take_the_reference_path(impl):
    """Pruning (a forward pre-hook) and LoRA-style wrappers act through the layer's forward."""
    layer = make_layer(16, depth=3, trees=1, seed=3)
    layer.impl = impl
    x = torch.randn(6, 16)
    mask = (torch.arange(16 * 15).view(15, 16) % 3 != 0).float()
    prune.custom_from_mask(layer.linear_in, "weight", mask)
    with torch.no_grad():
        layer.linear_in.weight_orig.mul_(3.0)  # the hook recomputes .weight at the next forward only
    expected = layer.reference_forward(x)
    torch.testing.assert_close(layer(x), expected)

    class Wrapped(torch.nn.Module):  # a LoRA-shaped wrapper: base layer plus a low-rank update
        def __init__(self, base):
            super().__init__()
            self.base, self.down, self.up = base, torch.nn.Linear(16, 2, bias=False), torch.nn.Linear(2, 15, bias=False)
            self.weight, self.bias = base.weight, base.bias

        def forward(self, inputs):
            return self.base(inputs) + self.up(self.down(inputs))

    wrapped = make_layer(16, depth=3, trees=1, seed=3)
    wrapped.impl = impl
    wrapped.linear_in = Wrapped(wrapped.linear_in)
    torch.testing.assert_close(wrapped(x), wrapped.reference_forward(x))


@pytest.mark.skipif("kernel" not in FAST_IMPLS, reason="numba is not available")
def test_kernel_refuses_double_backward():
    """The kernels' backward is not differentiable: create_graph must fail, not drop terms."""
    layer = make_layer(8, depth=2, trees=1, seed=1)
    layer.impl = "kernel"
    x = torch.randn(4, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(layer(x).pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.pow(2).sum().backward()


def test_float64_falls_back_to_gather():
    layer = make_layer(8, depth=2, trees=2, seed=3).double()
    x = torch.randn(4, 8, dtype=torch.float64)
    layer.impl = "auto"
    y = layer(x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, layer.reference_forward(x))


def test_unknown_impl_lists_valid_names():
    with pytest.raises(ValueError, match="reference"):
        FastFeedForward(8, 2, impl="fast")


def test_parameter_layout_and_init():
    layer = FastFeedForward(32, depth=3, trees=4)
    assert layer.linear_in.weight.shape == (60, 32) and layer.linear_in.bias.shape == (60,)
    assert layer.linear_out.weight.shape == (32, 60) and layer.linear_out.bias is None
    assert layer.linear_out.weight.abs().max() <= 1 / (4 * 4) ** 0.5
    assert FastFeedForward(32, depth=3, bias=False).linear_in.bias is None


@pytest.mark.parametrize("trees", [1, 2])
@pytest.mark.parametrize("tokens", [1, 4, 7, 64, 203])
def test_many_tokens_per_leaf(trees, tokens):
    """Many tokens share whole paths, so the kernel's combine takes its shared-row branch."""
    layer = make_layer(16, depth=4, trees=trees, seed=tokens)
    x = torch.randn(tokens, 16, generator=torch.Generator().manual_seed(5))
    if routing_margin(layer, x) <= 1e-5:
        pytest.skip("a logit within float32 noise of 0")
    for impl in FAST_IMPLS:
        assert_same(layer, x, impl)


@pytest.mark.skipif(fff.fff_kernel is None, reason="numba is not available")
@pytest.mark.parametrize("n_visits", [1, 3, 4, 9, 12])
def test_combine_rows_kernel_never_reads_its_output(n_visits):
    """The combine writes every output row without reading it first (its buffer is uninitialised)."""
    gen = torch.Generator().manual_seed(n_visits)
    n_tokens, width, n_rows = 37, 24, 9
    src = torch.randn(n_rows, width, generator=gen)
    rows = torch.randint(0, n_rows, (n_tokens, n_visits), generator=gen)
    rows[:20, : n_visits - 1] = rows[0, : n_visits - 1]  # twenty tokens share all but their last row
    coef = torch.randn(n_tokens, n_visits, generator=gen)
    order = torch.randperm(n_tokens, generator=gen)
    out = torch.full((n_tokens, width), float("nan"))
    fff.fff_kernel._combine_rows_kernel(src.numpy(), rows.numpy(), coef.numpy(), order.numpy(), out.numpy())
    expected = torch.einsum("tv,tvw->tw", coef.double(), src.double()[rows]).float()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    order = torch.arange(n_tokens)  # groups of four that share rows: the shared-row branch
    out.fill_(float("nan"))
    fff.fff_kernel._combine_rows_kernel(src.numpy(), rows.numpy(), coef.numpy(), order.numpy(), out.numpy())
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_autocast_keeps_the_kernels_out():
    """The float32 kernels would ignore autocast; the gather path runs the autocast ops."""
    torch.manual_seed(0)
    layer, x = FastFeedForward(32, 3, 1, impl="kernel"), torch.randn(10, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(layer(x), layer.gather_forward(x))
