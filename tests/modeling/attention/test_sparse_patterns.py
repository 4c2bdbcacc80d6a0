"""The fixed sparse patterns against their papers' rules, and the block-sparse path against the plain one."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from leanbert.config import LeanBertConfig
from leanbert.modeling.attention import block_sparse
from leanbert.modeling.attention.sparse_patterns import FIXED_PATTERNS, pattern_mask
from leanbert.modeling.model import LeanBertModel


def mask(name, length, block=4, global_tokens=1, random_blocks=2, summary_tokens=2, seed=0, max_positions=64):
    return pattern_mask(name, length, block, global_tokens, random_blocks, summary_tokens, seed, max_positions)


def test_each_rule_by_hand():
    i, j = 9, 2
    assert not mask("window", 12)[i, j] and mask("window", 12)[i, 5]  # |i - j| <= s = 4
    assert mask("longformer", 12)[i, 0] and mask("longformer", 12)[0, i]  # token 0 is global
    assert mask("strided", 12)[i, 1] and not mask("strided", 12)[i, 2]  # 9 - 1 = 8 is a multiple of 4
    assert mask("fixed", 12)[i, 10] and mask("fixed", 12)[i, 3] and not mask("fixed", 12)[i, 1]  # same block; 3 mod 4 >= 2
    assert mask("logsparse", 12)[i, 1] and mask("logsparse", 12)[i, 5] and not mask("logsparse", 12)[i, 2]  # 8, 4; 7
    assert mask("star", 12)[i, 8] and mask("star", 12)[i, 0] and not mask("star", 12)[i, 2]


@pytest.mark.parametrize("name", FIXED_PATTERNS)
def test_every_pattern_keeps_the_diagonal(name):
    assert mask(name, 37).diagonal().all()


def test_bigbird_rows_keep_window_global_and_random_blocks():
    length, block = 64, 4
    blocks = mask("bigbird", length, block=block, global_tokens=4, random_blocks=2)[::block, ::block]  # (16, 16)
    assert blocks[0].all() and blocks[:, 0].all()  # the global block
    for row in range(2, 15):
        assert blocks[row, row - 1: row + 2].all()
        assert int(blocks[row].sum()) == 3 + 1 + 2  # window, global, random
    assert torch.equal(blocks, mask("bigbird", length, block=block, global_tokens=4, random_blocks=2)[::block, ::block])


def _qkv(batch, heads, length, dim, seed):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, length, dim, generator=generator, dtype=torch.float64) for _ in range(3)]


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(FIXED_PATTERNS), length=st.integers(1, 90), block=st.integers(2, 12),
       global_tokens=st.integers(0, 6), padded=st.booleans(), seed=st.integers(0, 2**16))
def test_block_sparse_equals_the_plain_path(name, length, block, global_tokens, padded, seed):
    q, k, v = _qkv(2, 3, length, 8, seed)
    key_mask = None
    if padded:
        key_mask = torch.ones(2, length, dtype=torch.bool)
        key_mask[1, max(1, length // 2):] = False
    arguments = (block, global_tokens, 2, min(2, block), 0, 96)
    plan = block_sparse.plan(name, length, *arguments)
    fast = block_sparse.block_sparse_attention(q, k, v, plan, key_mask)
    plain = block_sparse.reference_attention(q, k, v, pattern_mask(name, length, *arguments), key_mask)
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(fast, plain, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", FIXED_PATTERNS)
@pytest.mark.parametrize("length", [61, 64, 70])
def test_a_plan_built_a_block_of_rows_at_a_time_is_the_plan_built_at_once(name, length, monkeypatch):
    arguments = (name, length, 8, 3, 2, 2, 5, 96)
    at_once = block_sparse.plan.__wrapped__(*arguments)
    monkeypatch.setattr(block_sparse, "PLAN_CHUNK_ELEMENTS", 1)  # one query block per pass
    in_chunks = block_sparse.plan.__wrapped__(*arguments)
    assert len(list(block_sparse._block_chunks(at_once.blocks, 8))) == at_once.blocks
    for field in ("sparse_rows", "gathered", "inside", "own", "dense_rows", "dense_pattern"):
        assert torch.equal(getattr(at_once, field), getattr(in_chunks, field)), field
    # and both are the pattern: the kept tiles are the whole mask's, cut into blocks
    whole = torch.zeros(at_once.blocks * 8, at_once.blocks * 8, dtype=torch.bool)
    whole[:length, :length] = pattern_mask(*arguments)
    whole.fill_diagonal_(True)
    rows = (at_once.dense_rows.unsqueeze(1) * 8 + torch.arange(8)).reshape(-1)
    assert torch.equal(at_once.dense_pattern, whole[rows])


def test_a_window_gathers_three_blocks_not_all():
    plan = block_sparse.plan("window", 1024, 64, 0, 0, 8, 0, 1024)
    assert len(plan.dense_rows) == 0 and plan.gathered.shape == (16, 3)


def test_global_rows_attend_densely_and_the_rest_sparsely():
    plan = block_sparse.plan("longformer", 1024, 64, 1, 0, 8, 0, 1024)
    assert plan.dense_rows.tolist() == [0] and plan.gathered.shape == (15, 4)  # window + the global block


def _model(**overrides):
    torch.manual_seed(0)
    fields = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  max_position_embeddings=256, attention_type="sparse", sparse_block_size=8)
    config = LeanBertConfig(**{**fields, **overrides})
    return LeanBertModel(config).eval()


@pytest.mark.parametrize("name", FIXED_PATTERNS)
def test_the_model_paths_agree_and_padding_stays_out(name, pad_tail):
    model = _model(sparse_pattern=name)
    ids = torch.randint(0, 100, (2, 70))
    mask, other = pad_tail(ids, 41, 5)
    with torch.no_grad():
        fast = model(ids, attention_mask=mask).last_hidden_state
        changed = model(other, attention_mask=mask).last_hidden_state
        unpadded = model(ids, attention_mask=mask, unpad=True).last_hidden_state
        for layer in model.encoder.layers:
            layer.attention.block.use_block_sparse = False
        plain = model(ids, attention_mask=mask).last_hidden_state
    valid = mask.bool()
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(unpadded[valid], fast[valid], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(changed[valid], fast[valid], atol=1e-6, rtol=1e-6)


def test_a_window_model_sees_only_its_neighbours():
    model = _model(sparse_pattern="window", num_hidden_layers=1)
    ids = torch.randint(0, 100, (1, 64))
    changed = ids.clone()
    changed[0, 60] = (ids[0, 60] + 1) % 100
    with torch.no_grad():
        base, other = model(ids).last_hidden_state, model(changed).last_hidden_state
    assert torch.equal(base[0, :52], other[0, :52])  # 60 - 52 > s = 8: out of every window before 52
    assert not torch.equal(base[0, 52:], other[0, 52:])


def test_fixed_patterns_train():
    model = _model(sparse_pattern="bigbird").train()
    out = model(torch.randint(0, 100, (2, 50))).last_hidden_state
    out.sum().backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


@pytest.mark.parametrize("pattern, field, value", [("bigbird", "sparse_block_size", 0),
                                                   ("fixed", "sparse_summary_tokens", 100),
                                                   ("bigbird", "sparse_random_blocks", -1), ("bigbird", "sparse_seed", 1.5),
                                                   ("dam", "sparse_penalty", float("nan")),
                                                   ("dam", "sparse_penalty", float("inf"))])
def test_bad_pattern_fields_are_refused_by_name(pattern, field, value):
    with pytest.raises(ValueError, match=rf"LeanBertConfig\.{field}={value!r}"):
        _model(sparse_pattern=pattern, **{field: value})


def test_summary_tokens_bind_only_the_fixed_pattern():
    _model(sparse_pattern="window", sparse_block_size=4)  # sparse_summary_tokens (8) is the fixed pattern's


@pytest.mark.parametrize("name", FIXED_PATTERNS)
def test_a_sequence_is_the_same_alone_and_in_a_longer_padded_batch(name, pad):
    """BigBird's random blocks, too, must not depend on how far the batch is padded."""
    model = _model(sparse_pattern=name, sparse_random_blocks=2)
    ids = torch.randint(0, 100, (1, 48))
    padded, mask = pad(ids, 40)
    with torch.no_grad():
        alone = model(ids).last_hidden_state
        batched = model(padded, attention_mask=mask).last_hidden_state[:, :48]
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", FIXED_PATTERNS)
def test_left_padding_keeps_the_global_tokens_and_blocks_on_the_real_tokens(name, pad):
    model = _model(sparse_pattern=name)
    ids = torch.randint(0, 100, (1, 40))
    padded, mask = pad(ids, 9, left=True)
    positions = torch.cat([torch.zeros(1, 9, dtype=torch.long), torch.arange(40).unsqueeze(0)], dim=1)
    with torch.no_grad():
        alone = model(ids).last_hidden_state
        left = model(padded, attention_mask=mask, position_ids=positions).last_hidden_state[:, 9:]
        left_unpadded = model(padded, attention_mask=mask, position_ids=positions, unpad=True).last_hidden_state[:, 9:]
    torch.testing.assert_close(left, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(left_unpadded, alone, atol=1e-5, rtol=1e-5)


def test_bigbird_without_random_blocks_keeps_window_and_global_only():
    blocks = mask("bigbird", 64, block=4, global_tokens=4, random_blocks=0)[::4, ::4]
    assert int(blocks[8].sum()) == 3 + 1


def test_bigbird_past_max_positions_is_the_same_in_any_padded_batch(pad):
    model = _model(sparse_pattern="bigbird", position_embedding_type="none", max_position_embeddings=32,
                   sparse_block_size=4, sparse_random_blocks=2)
    ids = torch.randint(0, 100, (1, 60))
    padded, mask_ = pad(ids, 20)
    with torch.no_grad():
        torch.testing.assert_close(model(padded, attention_mask=mask_).last_hidden_state[:, :60],
                                   model(ids).last_hidden_state, atol=1e-5, rtol=1e-5)


def test_a_seed_too_large_for_the_generator_is_refused_by_name():
    with pytest.raises(ValueError, match=r"sparse_seed=35184372088832.*2\*\*32"):
        _model(sparse_pattern="bigbird", sparse_seed=2**45)
