"""The prepacked inference path of PackedLinear equals its F.linear reference path."""

import copy
import pickle

import pytest
import torch

from leanbert.modeling.packed_linear import PackedLinear


@pytest.mark.parametrize("activation", [None, "gelu", "silu"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 24), (7, 24), (3, 5, 24), (0, 24)])
def test_packed_equals_reference(activation, bias, shape):
    torch.manual_seed(0)
    layer = PackedLinear(24, 40, bias=bias, activation=activation)
    x = torch.randn(*shape)
    with torch.no_grad():
        packed, reference = layer(x), layer.reference_forward(x)
    assert packed.shape == (*shape[:-1], 40)
    torch.testing.assert_close(packed, reference, atol=1e-5, rtol=1e-5)


def test_packed_copy_follows_weight_updates():
    layer = PackedLinear(8, 8)
    x = torch.randn(4, 8)
    with torch.no_grad():
        before = layer(x)
        layer.weight.add_(1.0)  # in place, as an optimiser step
        after = layer(x)
        torch.testing.assert_close(after, layer.reference_forward(x))
    assert not torch.allclose(before, after)
    layer.load_state_dict({"weight": torch.zeros(8, 8), "bias": torch.ones(8)})
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), torch.ones(4, 8))


def test_training_uses_the_differentiable_reference_path():
    layer = PackedLinear(8, 8, activation="gelu")
    x = torch.randn(4, 8, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and layer.weight.grad is not None


def test_packed_copy_is_not_carried_by_copies():
    layer = PackedLinear(8, 8)
    x = torch.randn(2, 8)
    with torch.no_grad():
        layer(x)
    assert layer._packed._entry is not None
    assert copy.deepcopy(layer)._packed._entry is None
    assert pickle.loads(pickle.dumps(layer))._packed._entry is None
    assert "_packed" not in "".join(layer.state_dict())
    twin = copy.deepcopy(layer)
    with torch.no_grad():
        twin.weight.zero_()
        torch.testing.assert_close(twin(x), twin.bias.expand(2, 8))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's own use of torch.jit
def test_autocast_and_compile_take_the_plain_path_and_a_strided_bias_is_read_right():
    torch.manual_seed(0)
    layer, x = PackedLinear(64, 64, activation="gelu"), torch.randn(8, 64)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):  # as with grad on: bfloat16, not a float32 GEMM
            assert layer(x).dtype == torch.bfloat16
        compiled = torch.compile(layer)  # inductor cannot lower the prepacked weight's op
        torch.testing.assert_close(compiled(x), layer.reference_forward(x), atol=1e-5, rtol=1e-5)
        layer.bias = torch.nn.Parameter(torch.randn(128)[::2])  # not contiguous: the op would misread it
        torch.testing.assert_close(layer(x), layer.reference_forward(x), atol=1e-5, rtol=1e-5)
