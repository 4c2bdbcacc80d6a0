"""`leanbert bench pretrain`: MLM pretraining throughput, leanbert against transformers' BertForMaskedLM.

Both models train through `transformers.Trainer` with the same settings: batch 64 of 128-token
blocks, AdamW (lr 1e-3, weight decay 0.01, eps 1e-6), the same MLM collator (15% masking, 80/10/10)
over the same blocks (the local Gutenberg corpus packed as `leanbert pretrain` packs it; random ids
when there is no local data). leanbert runs exactly as `leanbert pretrain` runs it (PretrainTrainer:
NaN guard, seeded masking, sparse prediction). The peer is a plain `Trainer` with
`BertForMaskedLM` (SDPA attention) of the same hidden size, layers, heads and intermediate size;
for a hash preset the peer has BERT's dense embedding table, the architecture the hash replaces.

Tokens/s count non-padding tokens per optimizer step (Trainer's own count), timed from step end to
step end (batch fetch + collate + forward + backward + optimizer), the first step of each run
excluded. Runs alternate leanbert / transformers `repeats` times in one process, so drift in machine
load hits both alike, and each side's median over all its timed steps is reported (a median, so a
burst of load from another process on a shared machine moves it less than a mean).

    pretrain_throughput_ratio = leanbert tokens/s / transformers tokens/s

Where leanbert's speed comes from (`attribution=True` adds a leanbert run that projects every
position to the vocabulary, as BERT does): the vocabulary projection is by far the largest matmul of
a small model (30,522 x hidden per token, against ~12 x hidden^2 per layer), and leanbert computes it,
its softmax and their backward only for the ~15% masked positions; a hash preset also decodes through
its factorised table ((h P^T) E^T: k = 16 instead of hidden = 128 multiply-adds per vocabulary entry).
Measured here (bert-hash-nano, 2 cores, shared machine): 5.8x in all, of which 4.4x from the
masked-only projection. Tried and not adopted, for lack of a measured win on this CPU: fused AdamW,
torch.compile (graph breaks at the data-dependent masked rows; ~1 min compile), unpadding (packed
blocks are >97% real tokens).

Cost: repeats x (steps x (~0.7 s + ~4 s)) for bert-hash-nano on 2 cores, plus the one-off packing.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

DEFAULT_PRESET = "bert-hash-nano"
BATCH = 64
SEQ_LEN = 128
STEPS_PER_RUN = 6


class _StepClock(TrainerCallback):
    """Seconds and non-padding tokens of each optimizer step (step end to step end)."""

    def __init__(self):
        self.seconds: list[float] = []
        self.tokens: list[int] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self._mark, self._seen = time.perf_counter(), state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.seconds.append(now - self._mark)
        self.tokens.append(state.num_input_tokens_seen - self._seen)
        self._mark, self._seen = now, state.num_input_tokens_seen

    def step_rates(self) -> list[float]:
        """Tokens/s of each step but the first (which warms up the data path)."""
        return [tokens / seconds for tokens, seconds in zip(self.tokens[1:], self.seconds[1:])]


def _blocks(data_root: Path | None, tokenizer, needed: int, seed: int = 0, named: str | None = None):
    """`needed` packed 128-token blocks with a block_index column; real text when available.

    named: how the user named data_root (`local_data.named_data_root`); then its Gutenberg corpus
    must be there (FileNotFoundError), rather than the run falling back to random ids.
    """
    from datasets import Dataset

    from leanbert.local_data import local_part
    from leanbert.train.seeded_masking import INDEX_COLUMN

    gutenberg = local_part(data_root, "corpus/gutenberg_nltk", named, "folder (the benchmark's text)")
    if gutenberg is not None:
        from leanbert.data.corpus import load_corpus, pack_blocks, tokenize_documents

        blocks = pack_blocks(tokenize_documents(load_corpus(gutenberg), tokenizer), tokenizer, SEQ_LEN)
        source = f"{gutenberg} packed into {SEQ_LEN}-token blocks"
        blocks = blocks.select(range(min(needed, len(blocks))))
    else:
        generator = torch.Generator().manual_seed(seed)
        ids = torch.randint(1000, len(tokenizer), (needed, SEQ_LEN), generator=generator)
        ids[:, 0], ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
        special = torch.zeros_like(ids)
        special[:, 0] = special[:, -1] = 1
        blocks = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist(),
                                    "special_tokens_mask": special.tolist()})
        source = "random token ids (no local corpus found)"
    return blocks.add_column(INDEX_COLUMN, list(range(len(blocks)))), source


def _arguments(output_dir: str, steps: int):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=BATCH, max_steps=steps,
        learning_rate=1e-3, weight_decay=0.01, adam_epsilon=1e-6, warmup_steps=0, optim="adamw_torch",
        save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, dataloader_pin_memory=False, remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding", use_cpu=not torch.accelerator.is_available(), seed=0,
    )


def _peer_config(config):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
        hidden_act=config.hidden_act, max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size, attn_implementation="sdpa",
    )


def run(preset: str | None = None, data_root: Path | None = None, repeats: int = 5,
        steps: int = STEPS_PER_RUN, attribution: bool = False, named: str | None = None) -> dict:
    """Interleaved Trainer runs of leanbert and transformers; tokens/s and their ratio.

    named: how the user named data_root (`local_data.named_data_root`): its tokenizer and corpus must be there.
    """
    import transformers
    from transformers import BertForMaskedLM, Trainer

    from leanbert.data.mlm_collator import MLMCollator
    from leanbert.local_data import default_tokenizer
    from leanbert.modeling.model import LeanBertForMaskedLM
    from leanbert.presets import preset_config
    from leanbert.tokenizer import load_tokenizer
    from leanbert.train.pretrain import PretrainTrainer
    from leanbert.train.seeded_masking import SeededMasking

    preset = preset or DEFAULT_PRESET
    tokenizer = load_tokenizer(default_tokenizer(data_root, named))
    config = preset_config(preset)
    blocks, source = _blocks(data_root, tokenizer, needed=BATCH * steps, named=named)
    torch.manual_seed(0)
    candidates = {
        "leanbert": (PretrainTrainer, LeanBertForMaskedLM(config)),
        "transformers": (Trainer, BertForMaskedLM(_peer_config(config))),
    }
    if attribution:
        candidates["leanbert_full_vocab_projection"] = (
            PretrainTrainer, LeanBertForMaskedLM(preset_config(preset, sparse_prediction=False)))
    rates: dict[str, list[float]] = {name: [] for name in candidates}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(repeats):
            for name, (trainer_class, model) in candidates.items():
                clock = _StepClock()
                masking = SeededMasking(MLMCollator(tokenizer, mask_ratio=0.15), seed=0)
                trainer_class(model=model, args=_arguments(scratch, steps), train_dataset=blocks,
                              data_collator=masking, callbacks=[clock]).train()
                rates[name].extend(clock.step_rates())
    medians = {name: statistics.median(values) for name, values in rates.items()}
    result = {
        "preset": preset,
        "peer": f"transformers {transformers.__version__} BertForMaskedLM (dense embeddings, SDPA), "
                f"hidden {config.hidden_size}, {config.num_hidden_layers} layers",
        "pretrain_throughput_ratio": medians["leanbert"] / medians["transformers"],
        "leanbert_tokens_per_second": medians["leanbert"],
        "transformers_tokens_per_second": medians["transformers"],
        "leanbert_ms_per_step": 1000 * BATCH * SEQ_LEN / medians["leanbert"],
        "transformers_ms_per_step": 1000 * BATCH * SEQ_LEN / medians["transformers"],
        "tokens_per_second_steps": {name: [round(v) for v in values] for name, values in rates.items()},
        "batch": BATCH, "seq_len": SEQ_LEN, "steps_per_run": steps, "repeats": repeats,
        "optimizer": "adamw_torch (lr 1e-3, wd 0.01, eps 1e-6)", "data": source,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
    }
    if attribution:
        full = medians["leanbert_full_vocab_projection"]
        result["leanbert_full_vocab_projection_tokens_per_second"] = full
        result["masked_only_projection_speedup"] = medians["leanbert"] / full
    return result
