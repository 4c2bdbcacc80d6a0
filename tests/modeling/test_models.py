"""The leanbert models behave as transformers models: Auto classes, save/load, pipelines, losses, checkpointing."""

import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    pipeline,
)

import leanbert  # noqa: F401
from leanbert import (
    LeanBertConfig,
    LeanBertForMaskedLM,
    LeanBertForSequenceClassification,
    LeanBertForTokenClassification,
    LeanBertModel,
)

VOCAB = 30522


def tiny_config(**overrides) -> LeanBertConfig:
    base = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=128)
    return LeanBertConfig(**{**base, **overrides})


COMPONENTS = [dict(), dict(embedding_type="hash", hash_projections=4),
              dict(norm_scheme="pre", final_norm=True, use_bias=False, position_embedding_type="scaled_sinusoidal",
                   pooler_type="avg", mlm_head_transform=False, mlm_decoder_bias=False),
              dict(embedding_type="hash", hash_projections=4, ffn_type="fff", fff_depth=3, fff_trees=2)]


def batch():
    torch.manual_seed(0)
    ids = torch.randint(1000, VOCAB, (3, 10))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    return ids, mask


@pytest.mark.parametrize("auto, cls", [
    (AutoModel, LeanBertModel), (AutoModelForMaskedLM, LeanBertForMaskedLM),
    (AutoModelForSequenceClassification, LeanBertForSequenceClassification),
    (AutoModelForTokenClassification, LeanBertForTokenClassification),
])
@pytest.mark.parametrize("components", COMPONENTS)
def test_auto_classes_round_trip_through_safetensors(tmp_path, auto, cls, components):
    model = cls(tiny_config(**components)).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = auto.from_pretrained(tmp_path).eval()
    assert type(loaded) is cls
    ids, mask = batch()
    with torch.no_grad():
        a, b = model(ids, attention_mask=mask), loaded(ids, attention_mask=mask)
    assert torch.equal(a[0], b[0])


@pytest.mark.parametrize("components", COMPONENTS)
def test_unpadded_path_equals_padded_path_at_real_tokens(components):
    model = LeanBertModel(tiny_config(**components)).eval()
    ids, mask = batch()
    with torch.no_grad():
        padded = model(ids, attention_mask=mask, output_hidden_states=True)
        unpadded = model(ids, attention_mask=mask, unpad=True, output_hidden_states=True)
    real = mask.bool()
    torch.testing.assert_close(unpadded.last_hidden_state[real], padded.last_hidden_state[real], atol=1e-5, rtol=1e-5)
    assert unpadded.last_hidden_state[~real].abs().max() == 0
    for a, b in zip(padded.hidden_states, unpadded.hidden_states):
        torch.testing.assert_close(b[real], a[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(unpadded.pooler_output, padded.pooler_output, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("components", COMPONENTS)
@pytest.mark.parametrize("training", [False, True])
def test_an_empty_batch_gives_empty_outputs(components, training):
    model = LeanBertForMaskedLM(tiny_config(**components)).train(training)
    ids = torch.zeros(0, 10, dtype=torch.long)
    with torch.set_grad_enabled(training):
        for unpad in (False, True):
            out = model(ids, attention_mask=torch.ones_like(ids), labels=torch.full_like(ids, -100), unpad=unpad)
            assert out.logits.shape[0] == 0
    encoder = LeanBertModel(tiny_config(**components)).train(training)
    with torch.set_grad_enabled(training):
        encoded = encoder(ids, attention_mask=torch.ones_like(ids), unpad=True)
    assert encoded.last_hidden_state.shape == (0, 10, 32) and encoded.pooler_output.shape[0] == 0


def test_sequences_of_length_zero_are_refused_by_name():
    with pytest.raises(ValueError, match="length 0"):
        LeanBertModel(tiny_config())(torch.zeros(2, 0, dtype=torch.long))


@pytest.mark.parametrize("components", COMPONENTS)
def test_torch_export_with_dynamic_batch_and_length_matches_eager(components):
    from torch.export import Dim

    model = LeanBertModel(tiny_config(**components)).eval()
    ids, mask = batch()
    batch_dim, length_dim = Dim("batch", min=1, max=64), Dim("length", min=2, max=128)
    shapes = {"input_ids": {0: batch_dim, 1: length_dim}, "attention_mask": {0: batch_dim, 1: length_dim}}
    exported = torch.export.export(model, (ids,), {"attention_mask": mask}, dynamic_shapes=shapes).module()
    torch.manual_seed(1)
    other_ids = torch.randint(1000, VOCAB, (5, 23))  # another batch size and length
    for other_mask in (torch.ones_like(other_ids), (torch.arange(23) < torch.tensor([[23], [4], [17], [1], [9]])).long()):
        with torch.no_grad():
            got, want = exported(other_ids, attention_mask=other_mask), model(other_ids, attention_mask=other_mask)
        torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got.pooler_output, want.pooler_output, atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_real_token_outputs():
    model = LeanBertModel(tiny_config()).eval()
    ids, mask = batch()
    with torch.no_grad():
        alone = model(ids[2:, :3]).last_hidden_state
        batched = model(ids, attention_mask=mask).last_hidden_state[2:, :3]
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_mlm_sparse_prediction_decodes_only_masked_positions():
    model = LeanBertForMaskedLM(tiny_config()).eval()
    ids, mask = batch()
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 4] = 17, 99
    with torch.no_grad():
        sparse = model(ids, attention_mask=mask, labels=labels)
        model.config.sparse_prediction = False
        dense = model(ids, attention_mask=mask, labels=labels)
    assert sparse.logits.shape == (2, VOCAB)
    assert dense.logits.shape == (3, 10, VOCAB)
    torch.testing.assert_close(sparse.logits[0], dense.logits[0, 2])
    torch.testing.assert_close(sparse.loss, dense.loss)


def test_hash_mlm_logits_use_the_factorised_tied_table():
    model = LeanBertForMaskedLM(tiny_config(embedding_type="hash", hash_projections=4, mlm_head_transform=False,
                                            mlm_decoder_bias=False)).eval()
    hidden = torch.randn(5, 32)
    emb = model.leanbert.embeddings
    expected = hidden @ emb.projection.weight @ emb.word_embeddings.weight.T  # h . P^T . E^T with P: k x H
    torch.testing.assert_close(model.cls(hidden, emb), expected)
    assert not any(p.shape == (VOCAB, 32) for p in model.parameters())
    assert model.get_output_embeddings() is None


def test_untied_decoder_is_its_own_matrix_and_round_trips(tmp_path):
    model = LeanBertForMaskedLM(tiny_config(embedding_type="hash", hash_projections=4, tie_word_embeddings=False,
                                            mlm_head_transform=False, mlm_decoder_bias=False)).eval()
    decoder = model.get_output_embeddings()
    assert decoder.weight.shape == (VOCAB, 32) and decoder.weight.std().item() == pytest.approx(0.02, rel=0.05)
    hidden = torch.randn(5, 32)
    torch.testing.assert_close(model.cls(hidden, model.leanbert.embeddings), hidden @ decoder.weight.T)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert torch.equal(loaded.get_output_embeddings().weight, decoder.weight)
    assert loaded.get_output_embeddings().weight.data_ptr() != loaded.leanbert.embeddings.word_embeddings.weight.data_ptr()


@pytest.mark.parametrize("problem_type, num_labels, labels", [
    ("single_label_classification", 3, torch.tensor([0, 2, 1])),
    ("multi_label_classification", 3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])),
    ("regression", 1, torch.tensor([0.5, 2.0, 4.5])),
])
def test_sequence_classification_losses(problem_type, num_labels, labels):
    model = LeanBertForSequenceClassification(tiny_config(num_labels=num_labels)).eval()
    ids, mask = batch()
    out = model(ids, attention_mask=mask, labels=labels)
    assert model.config.problem_type == problem_type
    logits = out.logits
    expected = {
        "single_label_classification": lambda: torch.nn.functional.cross_entropy(logits, labels),
        "multi_label_classification": lambda: torch.nn.functional.binary_cross_entropy_with_logits(logits, labels),
        "regression": lambda: torch.nn.functional.mse_loss(logits.squeeze(-1), labels),
    }[problem_type]()
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()


def test_token_classification_loss_ignores_minus_100():
    model = LeanBertForTokenClassification(tiny_config(num_labels=5)).eval()
    ids, mask = batch()
    labels = torch.randint(0, 5, ids.shape)
    labels[mask == 0] = -100
    out = model(ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (3, 10, 5)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits.view(-1, 5), labels.view(-1)))


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = LeanBertForMaskedLM(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).train()
    ids, mask = batch()
    labels = ids.clone()

    def grads():
        model.zero_grad()
        model(ids, attention_mask=mask, labels=labels).loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = grads()
    # transformers 5.x names it activation checkpointing (the old name warns); older 5.x lack it
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    assert model.leanbert.encoder.layers[0].gradient_checkpointing
    checkpointed = grads()
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b)


def test_the_attention_uses_sdpa(monkeypatch):
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    model = LeanBertModel(tiny_config()).eval()
    ids, mask = batch()
    model(ids, attention_mask=mask)
    assert len(calls) == 2  # one per layer


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return AutoTokenizer.from_pretrained(tokenizer_dir)


def test_fill_mask_pipeline(tokenizer):
    fill = pipeline("fill-mask", model=LeanBertForMaskedLM(tiny_config()).eval(), tokenizer=tokenizer, device="cpu")
    guesses = fill("the capital of france is [MASK].", top_k=4)
    assert len(guesses) == 4 and all("token_str" in g for g in guesses)
    assert sum(g["score"] for g in guesses) <= 1.0 + 1e-6


def test_text_classification_pipeline(tokenizer):
    config = tiny_config(num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    classify = pipeline("text-classification", model=LeanBertForSequenceClassification(config).eval(),
                        tokenizer=tokenizer, device="cpu")
    result = classify(["a great film", "a dull film"])
    assert [r["label"] in ("negative", "positive") for r in result] == [True, True]


def test_token_classification_pipeline(tokenizer):
    config = tiny_config(num_labels=3, id2label={0: "O", 1: "B-X", 2: "I-X"}, label2id={"O": 0, "B-X": 1, "I-X": 2})
    tag = pipeline("token-classification", model=LeanBertForTokenClassification(config).eval(), tokenizer=tokenizer,
                   device="cpu")
    result = tag("paris is in france")
    assert isinstance(result, list)
    assert all(r["entity"] in ("B-X", "I-X") for r in result)  # "O" is filtered out by the pipeline


def test_feature_extraction_pipeline_matches_the_model(tokenizer):
    model = LeanBertModel(tiny_config()).eval()
    extract = pipeline("feature-extraction", model=model, tokenizer=tokenizer, device="cpu")
    features = torch.tensor(extract("hello world")[0])
    enc = tokenizer("hello world", return_tensors="pt")
    with torch.no_grad():
        expected = model(**enc).last_hidden_state[0]
    torch.testing.assert_close(features, expected)
