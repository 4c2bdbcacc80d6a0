"""The component registries: each component's `own_fields` really are read by that component alone."""

from __future__ import annotations

import pytest
import torch

from leanbert.config import LeanBertConfig
from leanbert.modeling.model import LeanBertModel
from leanbert.modeling.registry import REGISTRIES, fields_without_effect

# two valid values of each component-owned field
VALUES = {
    "intermediate_size": (64, 96), "fff_depth": (2, 3), "fff_trees": (1, 2), "hash_projections": (4, 8),
    "mega_ema_size": (4, 8), "mega_shared_size": (16, 32), "mega_value_size": (None, 64), "mega_chunk_size": (-1, 8),
    "mega_bidirectional": (True, False), "sparse_pattern": ("dam", "window"), "sparse_penalty": (1e-4, 1e-2),
    "sparse_block_size": (4, 8), "sparse_global_tokens": (1, 2), "sparse_random_blocks": (1, 3),
    "sparse_summary_tokens": (1, 2), "sparse_seed": (0, 5),
}
BASE = dict(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=64)


def _owned():
    for field, registry in REGISTRIES.items():
        for name in registry.names():
            for owned in getattr(registry.get(name), "own_fields", ()):
                other = next(n for n in registry.names() if n != name)
                yield pytest.param(field, other, owned, id=f"{owned}-with-{field}={other}")


def test_every_owned_field_has_values_to_try():
    assert {owned for *_, owned in (p.values for p in _owned())} == set(VALUES)


@pytest.mark.parametrize("selector, selected, owned", list(_owned()))
def test_an_owned_field_changes_nothing_when_its_component_is_not_selected(selector, selected, owned):
    models = []
    for value in VALUES[owned]:
        config = LeanBertConfig(**{**BASE, selector: selected, owned: value,
                                   **({"hash_projections": 4} if selected == "hash" and owned != "hash_projections"
                                      else {})})
        assert owned in fields_without_effect(config)
        torch.manual_seed(0)
        models.append(LeanBertModel(config).eval())
    first, second = (m.state_dict() for m in models)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    ids = torch.randint(0, 100, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(models[0](ids).last_hidden_state, models[1](ids).last_hidden_state,
                                   rtol=0, atol=0)


def test_a_selected_components_fields_are_never_without_effect():
    config = LeanBertConfig(**BASE, ffn_type="fff", attention_type="sparse", embedding_type="hash", hash_projections=4)
    unused = fields_without_effect(config)
    assert {"fff_depth", "sparse_seed", "hash_projections"}.isdisjoint(unused)
    assert {"intermediate_size", "mega_chunk_size"} <= unused
