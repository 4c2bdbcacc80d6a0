"""DerivedWeight rebuilds its copy whenever the weight's values may have changed, and only then."""

from __future__ import annotations

import copy
import pickle

import torch
from torch import nn

from leanbert.modeling.derived_weight import DerivedWeight


def transposed(cache: DerivedWeight, weight: torch.Tensor) -> torch.Tensor:
    return cache.get(weight, lambda w: w.t().contiguous())


def test_built_once_while_the_weight_is_unchanged():
    weight, cache, builds = nn.Parameter(torch.randn(3, 4)), DerivedWeight(), []
    for _ in range(3):
        cache.get(weight, lambda w: builds.append(1) or w.t().contiguous())
    assert len(builds) == 1


def test_in_place_updates_rebuild():
    weight, cache = nn.Parameter(torch.randn(3, 4)), DerivedWeight()
    transposed(cache, weight)
    with torch.no_grad():
        weight.mul_(2.0)
    torch.testing.assert_close(transposed(cache, weight), weight.detach().t())


def test_new_storage_through_data_rebuilds():
    """`weight.data = t` keeps the version counter; vector_to_parameters and Module.half() do this."""
    weight, cache = nn.Parameter(torch.randn(3, 4)), DerivedWeight()
    transposed(cache, weight)
    version = weight._version
    weight.data = torch.zeros(3, 4)
    assert weight._version == version
    assert transposed(cache, weight).abs().max().item() == 0.0
    module = nn.Linear(4, 3)
    transposed(cache, module.weight)
    nn.utils.vector_to_parameters(torch.ones(15), module.parameters())
    assert torch.equal(transposed(cache, module.weight), torch.ones(4, 3))


def test_the_cached_storage_stays_alive_so_its_address_cannot_return():
    """A storage freed while cached could be reused at the same address with other values."""
    weight, cache = nn.Parameter(torch.randn(256, 256)), DerivedWeight()
    for value in range(1, 6):  # swap storages back and forth: the allocator would reuse the last address
        transposed(cache, weight)
        cached = weight.data_ptr()  # only the cache still holds this storage after the swap
        weight.data = torch.full((256, 256), float(value))
        assert weight.data_ptr() != cached
        assert torch.equal(transposed(cache, weight), torch.full((256, 256), float(value)))


def test_copies_start_empty_and_follow_their_own_weight():
    """A deepcopy's version counter restarts at 0: a carried entry could match it again, stale."""
    layer, cache = nn.Linear(4, 3), DerivedWeight()
    with torch.no_grad():
        for _ in range(3):
            layer.weight.add_(1.0)
    transposed(cache, layer.weight)
    holder = {"layer": layer, "cache": cache}
    twin = copy.deepcopy(holder)
    assert twin["cache"]._entry is None and pickle.loads(pickle.dumps(cache))._entry is None
    with torch.no_grad():  # EMA-style steps bring the copy's version back to the cached number
        twin["layer"].weight.mul_(0.0)
        while twin["layer"].weight._version < layer.weight._version:
            twin["layer"].weight.mul_(0.0)
    assert twin["layer"].weight._version == layer.weight._version
    assert transposed(twin["cache"], twin["layer"].weight).abs().max().item() == 0.0


def test_inference_tensors_are_never_cached():
    with torch.inference_mode():
        weight = torch.randn(3, 4)
    cache = DerivedWeight()
    torch.testing.assert_close(transposed(cache, weight), weight.t())
    assert cache._entry is None


def test_every_optimiser_step_drops_the_copies_of_its_weights():
    """Fused AdamW (Trainer's default) writes in place without moving the version counter."""
    stepped, frozen, cache, other = nn.Parameter(torch.ones(3, 4)), nn.Parameter(torch.ones(3, 4)), DerivedWeight(), DerivedWeight()
    for fused in (True, False):
        optimizer = torch.optim.AdamW([stepped], lr=0.5, fused=fused)
        transposed(cache, stepped), transposed(other, frozen)
        stepped.grad = torch.ones(3, 4)
        optimizer.step()
        torch.testing.assert_close(transposed(cache, stepped), stepped.detach().t())
        assert other._entry is not None  # a weight the optimiser does not hold keeps its copy


def test_train_and_eval_drop_copies_after_edits_through_data():
    from leanbert import LeanBertConfig, LeanBertModel
    from leanbert.modeling.packed_linear import PackedLinear

    config = LeanBertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64)
    model = LeanBertModel(config).eval()
    ids = torch.randint(0, 50, (2, 6))
    with torch.no_grad():
        model(ids)
        for p in model.parameters():
            p.data.mul_(0.5)  # `.data` has a version counter of its own: nothing else can see this
        model.eval()
        fast = model(ids).last_hidden_state
        for module in model.modules():
            if isinstance(module, PackedLinear):
                module.use_packed = False
        torch.testing.assert_close(fast, model(ids).last_hidden_state)
