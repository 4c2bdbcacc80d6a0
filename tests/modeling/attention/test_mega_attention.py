"""MEGA's gated attention as a leanbert component: chunking, padding, the two attention paths, training,
composability and the config's checks (parity with the reference: tests/convert/test_mega.py)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModel

import leanbert  # noqa: F401
from leanbert.config import LeanBertConfig
from leanbert.modeling.attention.mega import MegaAttention, attend_reference, attend_sdpa
from leanbert.modeling.model import LeanBertForMaskedLM, LeanBertForSequenceClassification, LeanBertModel


def mega_config(**overrides) -> LeanBertConfig:
    fields = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=1, intermediate_size=64,
                  hidden_act="silu", attention_type="mega", mega_ema_size=4, mega_shared_size=16,
                  mega_value_size=48, mega_chunk_size=8, max_position_embeddings=16,
                  position_embedding_type="none", type_vocab_size=0, embedding_norm=False, norm_scheme="pre",
                  norm_type="scalenorm", layer_norm_eps=1e-5, pad_token_id=1, mlm_head_act="tanh",
                  mlm_head_norm=False)
    fields.update(overrides)
    return LeanBertConfig(**fields)


def _model(cls=LeanBertModel, seed=0, **overrides):
    torch.manual_seed(seed)
    return cls(mega_config(**overrides)).eval()


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 3), length=st.integers(1, 40), chunk=st.integers(1, 16), padded=st.booleans(),
       seed=st.integers(0, 2**16))
def test_sdpa_path_equals_the_reference_path(batch, length, chunk, padded, seed):
    generator = torch.Generator().manual_seed(seed)
    query, key = (torch.randn(batch, length, 8, generator=generator) for _ in range(2))
    value = torch.randn(batch, length, 12, generator=generator)
    mask = torch.rand(batch, length, generator=generator) > 0.3 if padded else None
    table = torch.randn(2 * 16 - 1, generator=generator)
    chunk = min(chunk, length)

    def bias(c):
        position = torch.arange(c)
        return table[15 + position[None] - position[:, None]]

    expected = attend_reference(query, key, value, mask, bias, chunk, 0.0)
    assert expected.shape == (batch, length, 12) and torch.isfinite(expected).all()
    torch.testing.assert_close(attend_sdpa(query, key, value, mask, bias, chunk, 0.0), expected, atol=1e-5, rtol=1e-5)


def test_the_layer_paths_agree_in_the_model():
    model = _model()
    ids = torch.randint(3, 120, (2, 21))
    mask = torch.ones(2, 21, dtype=torch.long)
    mask[1, 13:] = 0
    with torch.no_grad():
        fast = model(ids, attention_mask=mask).last_hidden_state
        for layer in model.encoder.layers:
            layer.attention.use_sdpa = False
        plain = model(ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(fast[mask.bool()], plain[mask.bool()], atol=1e-5, rtol=1e-5)


def test_a_length_off_the_chunk_grid_equals_explicit_padding(pad):
    """21 tokens with chunks of 8 are run as 24, the last 3 keys dropped: the same as padding them yourself."""
    model = _model()
    ids = torch.randint(3, 120, (1, 21))
    padded_ids, padded_mask = pad(ids, 3, pad_id=1)
    with torch.no_grad():
        short = model(ids).last_hidden_state
        long = model(padded_ids, attention_mask=padded_mask).last_hidden_state[:, :21]
    torch.testing.assert_close(short, long, atol=1e-6, rtol=1e-5)


def test_attention_stays_inside_chunks_while_the_ema_crosses_them():
    model = _model(num_hidden_layers=1)
    ids = torch.randint(3, 120, (1, 16))
    changed = ids.clone()
    changed[0, 12] = (ids[0, 12] + 1 - 3) % 117 + 3  # a token of the second chunk
    with torch.no_grad():
        base, other = model(ids).last_hidden_state, model(changed).last_hidden_state
        for layer in model.encoder.layers:  # without the EMA's cross-chunk path, the first chunk would not move
            torch.nn.init.zeros_(layer.attention.ema.projection)
        cut_base, cut_other = model(ids).last_hidden_state, model(changed).last_hidden_state
    assert not torch.allclose(base[0, :8], other[0, :8])  # the (bidirectional) EMA carries it back
    torch.testing.assert_close(cut_base[0, :8], cut_other[0, :8], atol=0, rtol=0)


def test_padding_and_batching_do_not_change_real_positions(pad_tail):
    model = _model()
    ids = torch.randint(3, 120, (2, 19))
    mask, other_pads = pad_tail(ids, 10, 7)
    with torch.no_grad():
        out = model(ids, attention_mask=mask).last_hidden_state
        out_other = model(other_pads, attention_mask=mask).last_hidden_state
        alone = model(ids[1:, :10]).last_hidden_state
        unpadded = model(ids, attention_mask=mask, unpad=True).last_hidden_state
    torch.testing.assert_close(out[1, :10], out_other[1, :10], atol=0, rtol=0)
    torch.testing.assert_close(out[1, :10], alone[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(unpadded[mask.bool()], out[mask.bool()], atol=1e-6, rtol=1e-5)
    assert torch.isfinite(out).all()  # an all-padding chunk (positions 16-18 of row 1) gives no NaN


def test_without_chunking_a_sequence_past_max_positions_is_refused():
    model = _model(mega_chunk_size=-1)
    model(torch.randint(3, 120, (1, 16)))
    with pytest.raises(ValueError, match="max_position_embeddings=16 tokens, got 17"):
        model(torch.randint(3, 120, (1, 17)))


def test_with_chunking_sequences_may_be_longer_than_max_positions():
    out = _model()(torch.randint(3, 120, (1, 100))).last_hidden_state
    assert out.shape == (1, 100, 32) and torch.isfinite(out).all()


def test_post_norm_normalises_the_output():
    model = _model(norm_scheme="post", num_hidden_layers=1)
    x = torch.randn(2, 5, 32)
    attention = model.encoder.layers[0].attention
    out = attention.forward_grid(x, None)
    torch.testing.assert_close(out.pow(2).mean(-1), torch.full((2, 5), 1.0), atol=1e-4, rtol=1e-4)  # g = 1


def test_training_reaches_every_parameter_and_dropout_is_active():
    model = _model(LeanBertForMaskedLM).train()
    ids = torch.randint(3, 120, (2, 20))
    labels = torch.full_like(ids, -100)
    labels[:, ::3] = ids[:, ::3]
    model(ids, labels=labels).loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    torch.manual_seed(1)
    first = model(ids).logits
    torch.manual_seed(2)
    assert not torch.allclose(first, model(ids).logits)


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model = _model(LeanBertForMaskedLM, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
        if checkpointing:
            (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
        ids = torch.randint(3, 120, (2, 12), generator=torch.Generator().manual_seed(0))
        model(ids, labels=ids).loss.backward()
        grads.append(model.leanbert.encoder.layers[0].attention.ema.damping.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_mega_composes_with_hash_embeddings_and_fff(tmp_path):
    model = _model(LeanBertForSequenceClassification, embedding_type="hash", hash_projections=8, ffn_type="fff",
                   fff_depth=3, norm_type="layernorm", num_labels=3)
    ids = torch.randint(3, 120, (3, 14))
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (3, 3)
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).last_hidden_state, model.leanbert(ids).last_hidden_state)


def test_initialisation_follows_mega():
    attention = _model().encoder.layers[0].attention
    assert isinstance(attention, MegaAttention)
    signs = attention.ema.expansion.mean(0).sign()  # beta ~ +-1 alternating over the N dimensions
    assert signs.tolist() == [1.0, -1.0, 1.0, -1.0]
    assert torch.equal(attention.qk_bias, torch.zeros_like(attention.qk_bias))
    assert attention.relative_bias.std() > 0


@pytest.mark.parametrize("field, value, allowed", [
    ("mega_chunk_size", 0, "-1 \\(no chunking\\)"), ("mega_chunk_size", 17, "max_position_embeddings=16"),
    ("mega_ema_size", 0, "a positive int"), ("mega_shared_size", 2.5, "a positive int"),
    ("mega_value_size", -3, "None"), ("mega_bidirectional", "yes", "True or False"),
    ("norm_type", "rmsnorm", "scalenorm"), ("position_embedding_type", "rotary", "none"),
    ("mlm_head_act", "nope", "None"),
])
def test_bad_mega_fields_are_refused_by_name(field, value, allowed):
    with pytest.raises(ValueError, match=rf"LeanBertConfig\.{field}={value!r}.*{allowed}"):
        mega_config(**{field: value})
