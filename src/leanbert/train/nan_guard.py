"""Stop on a non-finite loss, before it reaches the weights or a checkpoint.

Checks, in a `transformers.Trainer` subclass:

* after every forward/backward (`training_step`), that the loss is finite. The check runs before the
  optimizer step, so the weights are still the last good ones. Under DDP the flag is all-reduced, so
  every rank stops at the same step instead of one rank waiting forever in the next all-reduce;
* before every checkpoint, that all parameters are finite (a finite loss can still come with
  overflowing gradients), so a saved checkpoint is never poisoned.

Either failure raises `NonFiniteLossError` naming the step and the last good checkpoint to resume
from. Trainer's own `logging_nan_inf_filter` only hides such losses from the logs; it does not stop.

Cost: one scalar read per step (plus one scalar all-reduce under DDP) and one pass over the
parameters per checkpoint.
"""

from __future__ import annotations

import os

import torch
from transformers.trainer_utils import get_last_checkpoint


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss or weights; the message says where to resume from."""


class NonFiniteGuardMixin:
    """Mix into a `transformers.Trainer` subclass (before Trainer in the bases)."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        bad = (~torch.isfinite(loss)).to(torch.int32).reshape(1)
        if self.args.world_size > 1:
            bad = self.accelerator.reduce(bad, reduction="sum")
        if int(bad.item()):
            raise NonFiniteLossError(
                f"loss became {loss.item()} at step {self.state.global_step + 1}; training stopped before the "
                f"optimizer step. {self._last_good_checkpoint_hint()}"
            )
        return loss

    def _save_checkpoint(self, model, trial) -> None:
        bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise NonFiniteLossError(
                f"weights became non-finite by step {self.state.global_step} ({bad[0]} and {len(bad) - 1} more); "
                f"this checkpoint was not saved. {self._last_good_checkpoint_hint()}"
            )
        super()._save_checkpoint(model, trial)

    def _last_good_checkpoint_hint(self) -> str:
        output_dir = self.args.output_dir
        last = get_last_checkpoint(output_dir) if output_dir and os.path.isdir(output_dir) else None
        if last is None:
            return "No checkpoint was saved yet; lower the learning rate (or raise warmup) and start again."
        return f"Last good checkpoint: {last}; lower the learning rate (or raise warmup) and rerun with --resume."
