"""Long sequences: leanbert's block-sparse patterns (and MEGA) against dense attention and transformers'
sparse models.

Seven 2-layer encoders of BERT-base width (hidden 768, 12 heads, feed-forward 3072), the same random
token ids, inference, batch 1, all interleaved in one process (`leanbert.bench.timing`):

    bert_sdpa            transformers BertModel, dense SDPA                       (the peer every ratio is against)
    bigbird_hf           transformers BigBirdModel, block_sparse (blocks of 64, 3 random, window 3 blocks)
    longformer_hf        transformers LongformerModel, attention_window 128 (+-64 tokens), token 0 global
    leanbert_full        leanbert, attention_type="full" (SDPA at these lengths)
    leanbert_bigbird     leanbert, sparse "bigbird": blocks of 64, the first block global, 3 random blocks
    leanbert_longformer  leanbert, sparse "longformer": |i - j| <= 64, token 0 global
    leanbert_mega        leanbert, 2 layers of the mega-small-16k preset (EMA + gated attention in chunks
                         of 1,024, values 2,304, feed-forward 2,304): another architecture, same width

The models have random weights: this measures speed only. Freed memory is kept for reuse (as in
`leanbert bench`), so that no model pays page faults.

    python benchmarks/sparse_attention.py [--lengths 1024,4096] [--repeats 5]

Writes benchmarks/results/sparse_attention.{json,md}.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build_models(length: int) -> dict:
    import torch
    from transformers import BertConfig, BertModel, BigBirdConfig, BigBirdModel, LongformerConfig, LongformerModel

    from leanbert.config import LeanBertConfig
    from leanbert.modeling.model import LeanBertModel
    from leanbert.presets import preset_config

    shape = dict(hidden_size=768, num_hidden_layers=2, num_attention_heads=12, intermediate_size=3072,
                 max_position_embeddings=length + 2, vocab_size=30522)
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
        "leanbert_mega": LeanBertModel(preset_config("mega-small-16k", num_hidden_layers=2, vocab_size=30522),
                                       add_pooling_layer=False),
    }
    return {name: model.eval() for name, model in models.items()}


def main() -> None:
    from leanbert.allocator import keep_freed_memory

    allocator = keep_freed_memory()
    import torch

    from leanbert.bench import host
    from leanbert.bench.results import write_results
    from leanbert.bench.timing import interleaved_medians

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lengths", default="1024,4096")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()

    rows = {}
    for length in (int(value) for value in args.lengths.split(",")):
        models = build_models(length)
        ids = torch.randint(1000, 30000, (1, length), generator=torch.Generator().manual_seed(1))
        global_attention = torch.zeros_like(ids)
        global_attention[:, 0] = 1

        def call(name, model):
            if name == "longformer_hf":
                return lambda: model(ids, global_attention_mask=global_attention)
            return lambda: model(ids)

        with torch.inference_mode():
            seconds = interleaved_medians({name: call(name, model) for name, model in models.items()},
                                          repeats=args.repeats)
        peer = seconds["bert_sdpa"]
        rows[str(length)] = {name: {"ms": round(1e3 * value, 1), "speed_vs_bert_sdpa": round(peer / value, 2)}
                             for name, value in seconds.items()}
        print(length, {name: row["speed_vs_bert_sdpa"] for name, row in rows[str(length)].items()}, flush=True)
    result = {"layers": 2, "hidden": 768, "heads": 12, "batch": 1, "repeats": args.repeats,
              "threads": torch.get_num_threads(), "host": host.describe(), "allocator": allocator, "lengths": rows}
    table = [{"tokens": length, **{name: f"{row['ms']} ms ({row['speed_vs_bert_sdpa']}x)" for name, row in by_name.items()}}
             for length, by_name in rows.items()]
    write_results(args.results, "sparse_attention", result,
                  "Long sequences: block-sparse patterns against dense SDPA and transformers' BigBird and Longformer",
                  table=table)


if __name__ == "__main__":
    main()
