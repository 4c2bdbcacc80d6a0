"""SparseBERT's structured DAM as a leanbert component: the Toeplitz mask, the straight-through gradient,
the sparsity penalty in the training loss, evaluation without noise, and the config's checks."""

import pytest
import torch

from leanbert.config import LeanBertConfig
from leanbert.modeling.attention.dam import MASK_VALUE, DifferentiableAttentionMask
from leanbert.modeling.model import LeanBertForMaskedLM, LeanBertModel
from leanbert.modeling.token_layout import TokenLayout


def sparse_config(**overrides) -> LeanBertConfig:
    fields = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=24, attention_type="sparse")
    return LeanBertConfig(**{**fields, **overrides})


def test_the_mask_is_toeplitz_in_the_distance_per_head():
    torch.manual_seed(0)
    dam = DifferentiableAttentionMask(3, 10).eval()
    with torch.no_grad():
        dam.logits.normal_()
    mask = dam(7)  # (3, 7, 7)
    keep = dam.keep()
    for h in range(3):
        for i in range(7):
            for j in range(7):
                assert mask[h, i, j] == (0.0 if keep[h, abs(i - j)] == 1 else MASK_VALUE)


def test_a_given_draw_decides_as_gumbel_argmax_and_the_gradient_passes_straight_through():
    torch.manual_seed(0)
    dam = DifferentiableAttentionMask(2, 6).train()
    with torch.no_grad():
        dam.logits.normal_()
    draw = torch.empty(2, 6, 2).exponential_()
    keep = dam.keep(draw)
    noisy = dam.logits - torch.log(draw + 1e-5)
    assert torch.equal(keep.detach(), (noisy.argmax(-1) == 0).float())
    (keep * torch.arange(6.0)).sum().backward()
    assert dam.logits.grad is not None and dam.logits.grad.abs().sum() > 0


def test_training_draws_fresh_noise_and_evaluation_uses_none():
    torch.manual_seed(0)
    dam = DifferentiableAttentionMask(4, 64)
    dam.train()
    assert not torch.equal(dam(64), dam(64))  # logits near 0: the noise decides
    dam.eval()
    assert torch.equal(dam(64), dam(64))
    assert torch.equal(dam.keep(), (dam.logits[..., 0] >= dam.logits[..., 1]).float())


def test_the_penalty_charges_the_mask_the_forward_applied():
    torch.manual_seed(0)
    dam = DifferentiableAttentionMask(4, 16).train()
    applied = dam(16)  # draws the noise
    kept_pairs = (applied == 0).float().sum()
    torch.testing.assert_close(dam.penalty(), kept_pairs)


def test_the_penalty_is_the_sum_of_the_full_mask():
    torch.manual_seed(0)
    dam = DifferentiableAttentionMask(3, 9).eval()
    with torch.no_grad():
        dam.logits.normal_()
    full = (dam(9) == 0).float().sum()
    torch.testing.assert_close(dam.penalty(), full)


def test_the_training_loss_carries_the_sparsity_penalty_and_evaluation_does_not():
    torch.manual_seed(0)
    model = LeanBertForMaskedLM(sparse_config(sparse_penalty=0.5, hidden_dropout_prob=0.0,
                                              attention_probs_dropout_prob=0.0))
    ids = torch.randint(0, 100, (2, 12))
    model.eval()
    with torch.no_grad():
        eval_loss = model(ids, labels=ids).loss
    model.train()
    torch.manual_seed(1)
    train_loss = model(ids, labels=ids).loss
    train_loss.backward()
    assert train_loss.item() > eval_loss.item() + 0.5 * 100  # each layer keeps far more than 100 pairs
    assert all(layer.attention.block.dam.logits.grad is not None for layer in model.leanbert.encoder.layers)


def test_padding_and_the_unpadded_layout_agree():
    torch.manual_seed(0)
    model = LeanBertModel(sparse_config()).eval()
    ids = torch.randint(0, 100, (2, 15))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    with torch.no_grad():
        padded = model(ids, attention_mask=mask).last_hidden_state
        unpadded = model(ids, attention_mask=mask, unpad=True).last_hidden_state
        alone = model(ids[1:, :9]).last_hidden_state
    valid = mask.bool()
    torch.testing.assert_close(unpadded[valid], padded[valid], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded[1, :9], alone[0], atol=1e-5, rtol=1e-5)


def test_a_sequence_longer_than_the_learnt_distances_is_refused():
    model = LeanBertModel(sparse_config()).eval()
    with pytest.raises(ValueError, match="max_position_embeddings=24"):
        model.encoder(torch.randn(1, 25, 32), TokenLayout(None))


@pytest.mark.parametrize("field, value, allowed", [("sparse_pattern", "pinwheel", r"\[.dam., .window."),
                                                   ("sparse_penalty", -1.0, "a finite number >= 0")])
def test_bad_sparse_fields_are_refused_by_name(field, value, allowed):
    with pytest.raises(ValueError, match=rf"LeanBertConfig\.{field}={value!r}.*{allowed}"):
        sparse_config(**{field: value})
