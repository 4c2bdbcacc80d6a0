"""Atomic Trainer checkpoints: a folder named `checkpoint-N` is always complete.

transformers 5.23's `Trainer._save_checkpoint` writes the weights, optimizer, scheduler, RNG states
and `trainer_state.json` one file after another straight into `<output_dir>/checkpoint-N`. A run killed
in the middle leaves a half-written `checkpoint-N`, and `get_last_checkpoint` (which only looks at
folder names) then picks it for `--resume`. So it is *not* atomic, and this mixin makes it so:

1. every rank lets Trainer write into `<output_dir>/.staging/checkpoint-N` (one fixed path, so all
   DDP ranks write their `rng_state_<rank>.pth` into the same folder);
2. after a barrier, rank 0 renames the finished folder to `<output_dir>/checkpoint-N` (one
   `os.replace` on the same file system) and applies `save_total_limit` to the published ones.

A kill at any point leaves either no `checkpoint-N` or a complete one, plus at most a stale
`.staging` folder that the next save clears. (Against a power cut one would also fsync; a killed
process loses nothing the kernel already holds.)

Cost: one directory rename and two barriers per checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from leanbert.atomic_io import publish_directory

STAGING_DIR_NAME = ".staging"
TRAINER_STATE_FILE = "trainer_state.json"


class AtomicCheckpointMixin:
    """Mix into a `transformers.Trainer` subclass (before Trainer in the bases)."""

    _checkpoint_staging: Path | None = None

    def _get_output_dir(self, trial) -> str:
        if self._checkpoint_staging is not None:
            return str(self._checkpoint_staging)
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = Path(super()._get_output_dir(trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = run_dir / STAGING_DIR_NAME
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)  # left over by a run killed mid-save
            staging.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        self._checkpoint_staging = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._checkpoint_staging = None
        self.accelerator.wait_for_everyone()  # every rank has written its RNG state
        if self.args.should_save:
            self._point_best_checkpoint_at(run_dir, staging, staging / name)
            publish_directory(staging / name, run_dir / name)
            shutil.rmtree(staging, ignore_errors=True)
            rotate_checkpoints(
                output_dir=str(run_dir),
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
            )
        self.accelerator.wait_for_everyone()

    def _point_best_checkpoint_at(self, run_dir: Path, staging: Path, staged: Path) -> None:
        """Trainer recorded the best checkpoint under the staging folder; record its published path."""
        best = self.state.best_model_checkpoint
        if best is None and self.state.best_global_step:
            candidate = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{self.state.best_global_step}"
            best = str(candidate) if candidate.is_dir() else None
        if best is not None and Path(best).parent == staging:
            best = str(run_dir / Path(best).name)
        if best != self.state.best_model_checkpoint:
            self.state.best_model_checkpoint = best
            if (staged / TRAINER_STATE_FILE).is_file():
                self.state.save_to_json(str(staged / TRAINER_STATE_FILE))

