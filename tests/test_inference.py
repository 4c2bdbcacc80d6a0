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
