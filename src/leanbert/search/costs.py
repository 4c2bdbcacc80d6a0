"""The two costs known without training: parameter size p(ξ) and inference time i(ξ), each against T.

p is exact (`presets.count_parameters`, built on the meta device): the base model with its pooler, and
its non-embedding part, as Bort reports its "effective" size.

i is measured, never estimated: the candidate's encoder and T's (random weights, eval mode, the compiled
CPU paths a user gets) take turns on the same batch of B x L random token ids (`interleaved_medians`),
so that drift in the machine's load hits both alike. The search keeps the ratio i/i_T; absolute times
are recorded but mean little on a shared host. Cost: `repeats` forwards of both models, and memory for
both at once.
"""

from __future__ import annotations

import torch

from leanbert.bench.timing import interleaved_medians


def parameter_counts(config) -> dict[str, int]:
    from leanbert.presets import count_parameters

    counts = count_parameters(config)
    return {"params": counts["total"], "non_embedding_params": counts["non_embedding"]}


def _encoder(config, seed: int):
    from leanbert.modeling.model import LeanBertModel

    torch.manual_seed(seed)
    return LeanBertModel(config).eval()


def time_against_reference(config, reference_config, batch_size: int, length: int, repeats: int,
                           seed: int = 0) -> dict[str, float]:
    """Median seconds per forward of the candidate and of T, timed in turns; and their ratio i/i_T."""
    vocab = min(config.vocab_size, reference_config.vocab_size)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch_size, length), generator=generator)  # (B, L)
    mask = torch.ones_like(ids)
    candidate, reference = _encoder(config, seed), _encoder(reference_config, seed)
    with torch.inference_mode():
        times = interleaved_medians({
            "candidate": lambda: candidate(ids, attention_mask=mask),
            "reference": lambda: reference(ids, attention_mask=mask),
        }, repeats=repeats)
    return {"seconds": times["candidate"], "reference_seconds": times["reference"],
            "time_ratio": times["candidate"] / times["reference"]}
