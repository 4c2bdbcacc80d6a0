"""Edges of the model classes that users reach through transformers' API."""

import pytest
import torch

import leanbert  # noqa: F401
from leanbert import LeanBertConfig, LeanBertForMaskedLM, LeanBertModel
from leanbert.modeling.model import LeanBertForSequenceClassification


def tiny(**overrides) -> LeanBertConfig:
    return LeanBertConfig(**{**dict(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64, max_position_embeddings=16), **overrides})


@pytest.mark.parametrize("embedding_type", ["dense", "hash"])
def test_resizing_the_vocabulary_resizes_the_mlm_bias(embedding_type):
    extra = {"hash_projections": 8} if embedding_type == "hash" else {}
    model = LeanBertForMaskedLM(tiny(embedding_type=embedding_type, mlm_decoder_bias=True, **extra)).eval()
    with torch.no_grad():
        model.cls.bias.normal_()
    old_bias = model.cls.bias.detach().clone()
    model.resize_token_embeddings(110)
    assert model.config.vocab_size == 110 and model.cls.bias.shape == (110,)
    assert torch.equal(model.cls.bias[:100], old_bias) and not model.cls.bias[100:].any()
    with torch.no_grad():
        assert model(torch.randint(0, 110, (1, 5))).logits.shape == (1, 5, 110)
    model.resize_token_embeddings(90)
    with torch.no_grad():
        assert model(torch.randint(0, 90, (1, 5))).logits.shape == (1, 5, 90)


def test_sinusoidal_positions_with_an_odd_width():
    model = LeanBertModel(tiny(hidden_size=30, num_attention_heads=2, position_embedding_type="scaled_sinusoidal"))
    table = model.embeddings.position_embeddings.table
    assert table.shape == (16, 30) and torch.equal(table[0, 0::2], torch.zeros(15))


def test_too_long_a_sequence_names_the_limit():
    with pytest.raises(ValueError, match="17 tokens is longer than the model's max_position_embeddings=16"):
        LeanBertModel(tiny())(torch.randint(0, 100, (1, 17)))


@pytest.mark.parametrize("model_class", [LeanBertModel, LeanBertForMaskedLM, LeanBertForSequenceClassification])
def test_attention_outputs_are_refused_not_ignored(model_class):
    with pytest.raises(ValueError, match="output_attentions is not supported"):
        model_class(tiny())(torch.randint(0, 100, (1, 5)), output_attentions=True)


def test_cls_pooling_reads_the_first_real_token_whatever_the_padding_side():
    model = LeanBertModel(tiny(pooler_type="cls")).eval()
    ids = torch.randint(1, 100, (1, 6))
    left = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    right = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask_left = torch.cat([torch.zeros(1, 3), torch.ones(1, 6)], dim=1).long()
    mask_right = mask_left.flip(1)
    position_left = torch.cat([torch.zeros(1, 3), torch.arange(6)[None]], dim=1).long()
    with torch.no_grad():
        expected = model(right, attention_mask=mask_right).pooler_output
        for unpad in (False, True):
            got = model(left, attention_mask=mask_left, position_ids=position_left, unpad=unpad).pooler_output
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_an_additive_mask_is_refused_not_inverted():
    ids = torch.randint(1, 100, (1, 4))
    for additive in (torch.tensor([[0.0, 0.0, -10000.0, -10000.0]]), torch.tensor([[0, 0, -10000, -10000]])):
        with pytest.raises(ValueError, match="negative values"):  # an integer one too, not only float
            LeanBertModel(tiny())(ids, attention_mask=additive)
    with torch.no_grad():  # a float 0/1 mask is fine
        LeanBertModel(tiny())(ids, attention_mask=torch.tensor([[1.0, 1.0, 0.0, 0.0]]))


def test_autocast_inference_runs_the_plain_ops_as_with_autograd():
    from leanbert import LeanBertModel
    from leanbert.presets import preset_config

    torch.manual_seed(0)
    model = LeanBertModel(preset_config("bert-tiny", num_hidden_layers=1)).eval()
    ids = torch.randint(5, 1000, (2, 9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():  # the fast paths used to run here in float32, ignoring autocast
            fast = model(input_ids=ids).last_hidden_state
        plain = model(input_ids=ids).last_hidden_state.detach()
    torch.testing.assert_close(fast, plain)


@pytest.mark.parametrize("preset", ["bert-tiny", "bert-hash-nano"])
def test_inputs_embeds_are_rows_of_the_input_embeddings(preset):
    from leanbert.presets import preset_config

    torch.manual_seed(0)
    model = LeanBertModel(preset_config(preset)).eval()
    ids = torch.randint(5, 1000, (2, 7))
    with torch.no_grad():  # the hash model used to take them as already projected, and failed
        from_rows = model(inputs_embeds=model.get_input_embeddings()(ids)).last_hidden_state
        torch.testing.assert_close(from_rows, model(input_ids=ids).last_hidden_state)


def test_resizing_an_untied_mlm_model_resizes_its_decoder(tmp_path):
    model = LeanBertForMaskedLM(tiny(tie_word_embeddings=False)).eval()
    old = model.cls.decoder.weight.detach().clone()
    model.resize_token_embeddings(108)
    assert model.cls.decoder.weight.shape == (108, 32) and torch.equal(model.cls.decoder.weight[:100], old)
    ids = torch.randint(0, 108, (1, 5))
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, 5, 108)
    model.save_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(LeanBertForMaskedLM.from_pretrained(tmp_path).eval()(ids).logits, logits)


def test_a_variant_saved_by_save_pretrained_loads(tmp_path):
    model = LeanBertModel(tiny()).eval()
    model.save_pretrained(tmp_path, variant="v2")
    ids = torch.randint(0, 100, (1, 5))
    with torch.no_grad():
        torch.testing.assert_close(LeanBertModel.from_pretrained(tmp_path, variant="v2").eval()(ids).last_hidden_state,
                                   model(ids).last_hidden_state)


def test_a_4d_attention_mask_is_refused_clearly():
    model = LeanBertModel(tiny()).eval()
    with pytest.raises(ValueError, match=r"attention_mask must be \(batch, length\).*\(1, 1, 5, 5\)"):
        model(torch.randint(0, 100, (1, 5)), attention_mask=torch.ones(1, 1, 5, 5))
