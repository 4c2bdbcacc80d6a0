"""`leanbert bench model`: leanbert's encoder against transformers' BertModel (SDPA), same weights.

(a) padded batches, B x L = 8 x 128 with real lengths drawn uniformly in [L/4, L] (seeded): the
    exact path (padded layout, BERT's values everywhere) and the unpadded path (same values at real
    positions; padded positions are not computed).
(b) the SST-2 dev job: 872 sentences at batch 32, leanbert's `encode` (length buckets + unpadding)
    against a plain transformers `feature-extraction` pipeline over the same weights. The outputs
    are checked equal before timing.
`leanbert bench` keeps freed memory for reuse (`allocator.py`): under glibc's default a
transformers forward of (a) pays ~71,000 page faults for its temporaries and leanbert's unpadded
one none, and that difference is the allocator's, not the models'. The record holds each
candidate's page faults per call.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from leanbert.allocator import faults_per_call
from leanbert.bench.timing import interleaved_medians


def _models(preset: str):
    from transformers import BertConfig, BertModel

    from leanbert.convert.bert import bert_state_dict_to_leanbert
    from leanbert.modeling.model import LeanBertModel
    from leanbert.presets import preset_config

    config = preset_config(preset)
    torch.manual_seed(0)
    bert = BertModel(BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
        attn_implementation="sdpa",
    )).eval()
    ours = LeanBertModel(config).eval()
    ours.load_state_dict(bert_state_dict_to_leanbert(bert.state_dict(), config.num_hidden_layers, task_model=False))
    return bert, ours


def padded_batches(bert, ours, batch: int = 8, length: int = 128, repeats: int = 10) -> dict:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (batch, length), generator=generator)
    lengths = torch.randint(length // 4, length + 1, (batch,), generator=generator)
    lengths[0] = length
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    with torch.inference_mode():
        ref = bert(ids, attention_mask=mask).last_hidden_state
        exact = ours(ids, attention_mask=mask).last_hidden_state
        fast = ours(ids, attention_mask=mask, unpad=True).last_hidden_state
        real = mask.bool()
        max_diff = max((ref - exact).abs().max().item(), (ref[real] - fast[real]).abs().max().item())
        candidates = {
            "transformers": lambda: bert(ids, attention_mask=mask),
            "leanbert_exact": lambda: ours(ids, attention_mask=mask),
            "leanbert_unpadded": lambda: ours(ids, attention_mask=mask, unpad=True),
        }
        times = interleaved_medians(candidates, repeats=repeats)
        faults = faults_per_call(candidates)
    return {
        "padded_ratio": times["transformers"] / times["leanbert_unpadded"],
        "padded_ratio_exact_path": times["transformers"] / times["leanbert_exact"],
        "padded_seconds": times,
        "padded_page_faults": faults,
        "padded_real_token_fraction": mask.float().mean().item(),
        "padded_max_abs_diff": max_diff,
    }


def sst2_dev(bert, ours, sst2_path: Path, tokenizer_dir: str, repeats: int = 2) -> dict:
    from transformers import AutoTokenizer, pipeline

    from leanbert.inference import encode

    texts = [json.loads(line)["sentence"] for line in sst2_path.read_text(encoding="utf-8").splitlines() if line]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    extractor = pipeline("feature-extraction", model=bert, tokenizer=tokenizer, device="cpu")
    with torch.inference_mode():
        ours_out = encode(ours, tokenizer, texts, batch_size=32)
        ref_out = extractor(texts[:64], batch_size=32)
        # a batched pipeline returns each text padded to its batch's longest: compare the real tokens
        max_diff = max((torch.tensor(r[0][: len(o)]) - o).abs().max().item() for r, o in zip(ref_out, ours_out[:64]))
        times = interleaved_medians({
            "transformers_pipeline": lambda: extractor(texts, batch_size=32),
            "leanbert_encode": lambda: encode(ours, tokenizer, texts, batch_size=32),
        }, repeats=repeats, warmup=0)
    return {
        "sst2_dev_ratio": times["transformers_pipeline"] / times["leanbert_encode"],
        "sst2_dev_seconds": times,
        "sst2_dev_sentences": len(texts),
        "sst2_dev_max_abs_diff": max_diff,
    }


def run(preset: str = "bert-base", data_root: Path | None = None, tokenizer: str | None = None,
        repeats: int = 10, named: str | None = None) -> dict:
    """named: how the user named data_root (`local_data.named_data_root`): then its SST-2 dev file and
    tokenizer must be there (FileNotFoundError before any timing), rather than the SST-2 run being skipped."""
    from leanbert.bench import host
    from leanbert.local_data import default_tokenizer, local_part
    from leanbert.modeling import linear_backend

    sst2 = local_part(data_root, "glue/sst2/validation.jsonl", named, "(the SST-2 dev run's data)")
    tokenizer = tokenizer or default_tokenizer(data_root, named)
    bert, ours = _models(preset)
    result = {"preset": preset, "threads": torch.get_num_threads(), "torch": torch.__version__, "host": host.describe()}
    result.update(padded_batches(bert, ours, repeats=repeats))
    if sst2 is not None:
        result.update(sst2_dev(bert, ours, sst2, tokenizer))
    else:
        result["sst2_dev_ratio"] = None
        result["sst2_dev_skipped"] = "no SST-2 dev file (give --data-dir)"
    result["gemm_paths"] = linear_backend.decisions()  # which GEMM each PackedLinear shape took here
    return result
