"""Shared helpers for the attention tests."""

from __future__ import annotations

import pytest
import torch


def padded(ids: torch.Tensor, extra: int, pad_id: int = 0, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids with `extra` pad tokens added on one side, the 0/1 attention mask that marks them)."""
    pads = torch.full((ids.shape[0], extra), pad_id, dtype=ids.dtype)
    real, none = torch.ones_like(ids), torch.zeros_like(pads)
    if left:
        return torch.cat([pads, ids], dim=1), torch.cat([none, real], dim=1)
    return torch.cat([ids, pads], dim=1), torch.cat([real, none], dim=1)


@pytest.fixture
def pad():
    return padded


def padded_tail(ids: torch.Tensor, start: int, other_token: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the 0/1 mask with row 1 padding from `start` on, the ids with `other_token` in that padding): a model
    must give the same real positions for both."""
    mask = torch.ones_like(ids)
    mask[1, start:] = 0
    other = ids.clone()
    other[1, start:] = other_token
    return mask, other


@pytest.fixture
def pad_tail():
    return padded_tail
