"""A tensor derived from a weight (a transposed or prepacked copy), rebuilt whenever the weight changes.

    derived = build(weight), reused while the weight holds the same values

Fast inference paths read weights in another layout than the parameter's: the FFF kernels read
`linear_out.weight` as contiguous rows, oneDNN a prepacked blob. Building that copy costs a pass
over the weight, so it is cached, and the cache must never serve stale values. A weight can change
in three ways, and each is caught:
  in place      optimiser steps, `load_state_dict`, EMA updates: the version counter moves;
  new storage   `weight.data = t` (`vector_to_parameters`, `Module.half()`, `.to()`): the data
                pointer moves. The cache keeps a reference to the storage it was built from, so
                that address cannot be handed to another tensor while the entry lives;
  new tensor    a new Parameter assigned to the module: its identity differs.
The cache is not carried by `copy.deepcopy` or pickling (a copy's version counter restarts at 0,
and could reach the cached number again with other values). Inference tensors have no version
counter and are never cached. Cost: one derived copy per weight, plus the old storage until the
next rebuild.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


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
        return entry[3]

    def clear(self) -> None:
        self._entry = None

    def __deepcopy__(self, memo: dict) -> DerivedWeight:
        return DerivedWeight()

    def __getstate__(self) -> dict:
        return {"_entry": None}
