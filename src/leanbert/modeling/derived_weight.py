"""A tensor derived from a weight (a transposed or prepacked copy), rebuilt whenever the weight changes.

    derived = build(weight), reused while the weight holds the same values

Fast inference paths read weights in another layout than the parameter's: the FFF kernels read
`linear_out.weight` as contiguous rows, oneDNN a prepacked blob. Building that copy costs a pass
over the weight, so it is cached, and the cache must never serve stale values. A weight changes in
these ways, and each is caught:
  optimiser step   any `torch.optim.Optimizer` (fused AdamW, Trainer's default, included, which
                   writes in place without moving the version counter): a global step hook drops
                   the copies of the weights that optimiser holds;
  in place         `load_state_dict`, EMA updates, edits under `torch.no_grad()`: the version
                   counter moves;
  new storage      `weight.data = t` (`vector_to_parameters`, `Module.half()`, `.to()`): the data
                   pointer moves. The cache keeps a reference to the storage it was built from, so
                   that address cannot be handed to another tensor while the entry lives;
  new tensor       a new Parameter assigned to the module: its identity differs.
Not caught by itself: in-place edits through `.data` (`w.data.mul_(2)`, as LoRA merges do), which
bypass the version counter; `clear_derived_weights(module)` drops every copy under a module, and
leanbert models call it on `train()` / `eval()`. The cache is not carried by `copy.deepcopy` or
pickling (a copy's version counter restarts at 0, and could reach the cached number again with
other values). Inference tensors have no version counter and are never cached. Cost: one derived
copy per weight, plus the old storage until the next rebuild.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

_LIVE: weakref.WeakSet[DerivedWeight] = weakref.WeakSet()  # caches holding an entry


class DerivedWeight:
    """Caches `build(weight)` for one weight; `get` rebuilds it when the weight has changed."""

    def __init__(self) -> None:
        self._entry: tuple[torch.Tensor, torch.Tensor, int, torch.Tensor] | None = None  # (weight, alias, version, derived)

    def get(self, weight: torch.Tensor, build: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """build(weight.detach()), from the cache when the weight is unchanged since it was built."""
        try:
            version = weight._version
        except RuntimeError:  # an inference tensor: no version counter, so never cached
            return build(weight.detach())
        entry = self._entry
        if (entry is None or entry[0] is not weight or entry[2] != version
                or entry[1].data_ptr() != weight.data_ptr() or entry[1].shape != weight.shape):
            # built outside inference mode, so that a later training forward may save it for backward
            with torch.inference_mode(False), torch.no_grad():
                alias = weight.detach()  # keeps the storage (and so its address) alive
                entry = (weight, alias, version, build(alias))
            self._entry = entry
            _LIVE.add(self)
        return entry[3]

    def clear(self) -> None:
        self._entry = None
        _LIVE.discard(self)

    def holds(self, weights: set[int]) -> bool:
        """Whether the entry was built from one of these weights (by id)."""
        entry = self._entry
        return entry is not None and id(entry[0]) in weights

    def __deepcopy__(self, memo: dict) -> DerivedWeight:
        return DerivedWeight()

    def __getstate__(self) -> dict:
        return {"_entry": None}


def clear_derived_weights(module: nn.Module) -> None:
    """Drops every cached copy under `module`, e.g. after editing weights through `.data`."""
    for sub in module.modules():
        for value in vars(sub).values():
            if isinstance(value, DerivedWeight):
                value.clear()


def _forget_stepped_weights(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    """After any optimiser step: drop the copies of the weights it may have changed."""
    if not _LIVE:
        return
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for cache in list(_LIVE):
        if cache.holds(stepped):
            cache.clear()


register_optimizer_step_post_hook(_forget_stepped_weights)
