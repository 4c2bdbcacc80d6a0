"""Long sequences: leanbert's block-sparse patterns and MEGA against dense attention and transformers'
sparse models (`leanbert bench attention`).

Seven encoders of BERT-base width (hidden 768, 12 heads, feed-forward 3072; 2 layers), the same
random token ids, inference, batch 1, all interleaved in one process (`timing.interleaved_medians`):

    bert_sdpa            transformers BertModel, dense SDPA                       (the peer every ratio is against)
    bigbird_hf           transformers BigBirdModel, block_sparse (blocks of 64, 3 random, window 3 blocks)
    longformer_hf        transformers LongformerModel, attention_window 128 (+-64 tokens), token 0 global
    leanbert_full        leanbert, attention_type="full" (SDPA at these lengths)
    leanbert_bigbird     leanbert, sparse "bigbird": blocks of 64, the first block global, 3 random blocks
    leanbert_longformer  leanbert, sparse "longformer": |i - j| <= 64, token 0 global
    leanbert_mega        leanbert, layers of the mega-small-16k preset (EMA + gated attention in chunks
                         of 1,024, values 2,304, feed-forward 2,304): another architecture, same width

The models have random weights: this measures speed only.
"""

from __future__ import annotations

def build_models(length: int, hidden: int = 768, layers: int = 2) -> dict:
    import torch
    from transformers import BertConfig, BertModel, BigBirdConfig, BigBirdModel, LongformerConfig, LongformerModel

    from leanbert.config import LeanBertConfig
    from leanbert.modeling.model import LeanBertModel
    from leanbert.presets import preset_config

    shape = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                 intermediate_size=4 * hidden, max_position_embeddings=length + 2, vocab_size=30522)
    torch.manual_seed(0)
    models = {
        "bert_sdpa": BertModel(BertConfig(**shape, attn_implementation="sdpa"), add_pooling_layer=False),
        "bigbird_hf": BigBirdModel(BigBirdConfig(**shape, attention_type="block_sparse", block_size=64,
                                                 num_random_blocks=3), add_pooling_layer=False),
        "longformer_hf": LongformerModel(LongformerConfig(**shape, attention_window=128), add_pooling_layer=False),
        "leanbert_full": LeanBertModel(LeanBertConfig(**shape), add_pooling_layer=False),
        "leanbert_bigbird": LeanBertModel(LeanBertConfig(**shape, attention_type="sparse", sparse_pattern="bigbird",
                                                         sparse_block_size=64, sparse_global_tokens=64,
                                                         sparse_random_blocks=3), add_pooling_layer=False),
        "leanbert_longformer": LeanBertModel(LeanBertConfig(**shape, attention_type="sparse",
                                                            sparse_pattern="longformer", sparse_block_size=64,
                                                            sparse_global_tokens=1), add_pooling_layer=False),
        "leanbert_mega": LeanBertModel(preset_config("mega-small-16k", num_hidden_layers=layers, vocab_size=30522,
                                                     hidden_size=hidden, intermediate_size=3 * hidden,
                                                     mega_value_size=3 * hidden, mega_shared_size=hidden // 4),
                                       add_pooling_layer=False),
    }
    return {name: model.eval() for name, model in models.items()}


def run(lengths: list[int], repeats: int = 5, hidden: int = 768, layers: int = 2) -> dict:
    """Median milliseconds per forward of each model at each length, and its speed against bert_sdpa."""
    import torch

    from leanbert.bench import host
    from leanbert.bench.timing import interleaved_medians

    rows = {}
    for length in lengths:
        models = build_models(length, hidden, layers)
        ids = torch.randint(1000, 30000, (1, length), generator=torch.Generator().manual_seed(1))
        global_attention = torch.zeros_like(ids)
        global_attention[:, 0] = 1

        def call(name, model):
            if name == "longformer_hf":
                return lambda: model(ids, global_attention_mask=global_attention)
            return lambda: model(ids)

        with torch.inference_mode():
            seconds = interleaved_medians({name: call(name, model) for name, model in models.items()}, repeats=repeats)
        peer = seconds["bert_sdpa"]
        rows[str(length)] = {name: {"ms": round(1e3 * value, 1), "speed_vs_bert_sdpa": round(peer / value, 2)}
                             for name, value in seconds.items()}
    return {"layers": layers, "hidden": hidden, "heads": hidden // 64, "batch": 1, "repeats": repeats,
            "threads": torch.get_num_threads(), "host": host.describe(), "lengths": rows}


def table(result: dict) -> list[dict]:
    """One Markdown row per length: each model's milliseconds and ratio."""
    return [{"tokens": length, **{name: f"{row['ms']} ms ({row['speed_vs_bert_sdpa']}x)" for name, row in by_name.items()}}
            for length, by_name in result["lengths"].items()]
