"""`make demo`, before the training pipeline: build bert-hash-nano, show the presets, fill a mask."""

from __future__ import annotations

import argparse


def run_demo(args: argparse.Namespace) -> None:
    from transformers import AutoTokenizer, pipeline

    from leanbert.cli import print_presets
    from leanbert.local_data import default_tokenizer, find_data_root
    from leanbert.modeling.model import LeanBertForMaskedLM
    from leanbert.presets import count_parameters, preset_config

    print_presets()
    config = preset_config("bert-hash-nano")
    model = LeanBertForMaskedLM(config).eval()
    counts = count_parameters(config)
    untied = config.vocab_size * config.hidden_size
    print(f"bert-hash-nano: {counts['total']:,} parameters (base + pooler), {counts['with_mlm_head']:,} with the "
          f"tied factorised MLM head (an untied V x H decoder would add {untied:,})")
    tokenizer = AutoTokenizer.from_pretrained(default_tokenizer(find_data_root(args.data_dir)))
    fill = pipeline("fill-mask", model=model, tokenizer=tokenizer, device="cpu")
    for guess in fill("the capital of france is [MASK].", top_k=3):
        print(f"  {guess['token_str']!r}: {guess['score']:.4f}  (untrained weights)")
