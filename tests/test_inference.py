"""`encode` (length buckets + unpadding) gives the same vectors as one text at a time."""

import torch
from transformers import AutoTokenizer, pipeline

from leanbert import LeanBertConfig, LeanBertModel
from leanbert.inference import encode


def test_encode_equals_per_text_and_pipeline(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = LeanBertModel(LeanBertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=64)).eval()
    texts = ["a", "the movie was surprisingly good , and long", "bad", "", "one two three four five six seven"]
    out = encode(model, tokenizer, texts, batch_size=2)
    extractor = pipeline("feature-extraction", model=model, tokenizer=tokenizer, device="cpu")
    for text, vectors in zip(texts, out):
        enc = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            expected = model(**enc).last_hidden_state[0]
        assert vectors.shape == expected.shape
        torch.testing.assert_close(vectors, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(vectors, torch.tensor(extractor(text)[0]), atol=1e-5, rtol=1e-5)
    assert model.training is False


def test_encode_edges_one_string_none_and_texts_longer_than_the_model(tokenizer_dir):
    import pytest

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = LeanBertModel(LeanBertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64, max_position_embeddings=16)).train()
    with pytest.raises(TypeError, match=r"not one string \(wrap it"):
        encode(model, tokenizer, "hello world")
    assert encode(model, tokenizer, []) == []
    long_text = " ".join(["word"] * 40)
    for max_length in (512, None):  # both cut to the model's 16 positions
        (vectors,) = encode(model, tokenizer, [long_text], max_length=max_length)
        assert vectors.shape == (16, 32)
    assert encode(model, tokenizer, [long_text], max_length=8)[0].shape == (8, 32)
    assert model.training is True  # put back as it was
