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
