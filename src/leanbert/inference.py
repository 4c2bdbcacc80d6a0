"""Batched inference that keeps outputs equal to one-text-at-a-time encoding, only faster.

`encode` tokenizes all texts in one call of the fast tokenizer, sorts them by length, and runs
batches whose padding is at most the spread of lengths inside a bucket: padding work drops from
O(B * max_len) per batch to nearly the real token count, and a leanbert model also runs unpadded
(layers see only real tokens). Outputs come back in the input order,
trimmed to each text's real length, so they equal what a per-text (or padded-batch) run gives.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch


@torch.inference_mode()
def encode(
    model: torch.nn.Module,
    tokenizer,
    texts: Sequence[str] | Iterable[str],
    batch_size: int = 32,
    max_length: int | None = 512,
    text_pairs: Sequence[str] | None = None,
) -> list[torch.Tensor]:
    """Last hidden states, one (L_i, H) tensor per text, in input order.

    `model` is any encoder returning `last_hidden_state` (a leanbert or transformers model).
    Texts are truncated to `max_length` tokens, and never beyond the model's
    `max_position_embeddings`; None truncates only to the latter.
    """
    if isinstance(texts, str):
        raise TypeError("encode: texts must be a list of strings, not one string (wrap it: [text])")
    texts = list(texts)
    if not texts:
        return []
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None:
        max_length = positions if max_length is None else min(max_length, positions)
    encoded = tokenizer(
        texts, text_pairs, truncation=max_length is not None, max_length=max_length,
        return_attention_mask=False, return_token_type_ids=True,
    )
    ids, types = encoded["input_ids"], encoded["token_type_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    pad = tokenizer.pad_token_id or 0
    outputs: list[torch.Tensor | None] = [None] * len(texts)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            width = len(ids[chunk[-1]])  # sorted: the last is the longest
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            token_type_ids = torch.zeros((len(chunk), width), dtype=torch.long)
            attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, index in enumerate(chunk):
                n = len(ids[index])
                input_ids[row, :n] = torch.tensor(ids[index])
                token_type_ids[row, :n] = torch.tensor(types[index])
                attention_mask[row, :n] = 1
            extra = {"unpad": True} if getattr(model.config, "model_type", None) == "leanbert" else {}
            hidden = model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **extra
            ).last_hidden_state  # (b, width, H)
            for row, index in enumerate(chunk):
                outputs[index] = hidden[row, : len(ids[index])].clone()
    finally:
        model.train(was_training)
    return outputs  # type: ignore[return-value]
