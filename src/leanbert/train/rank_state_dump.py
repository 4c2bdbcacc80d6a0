"""Debugging aid: each rank dumps its final weights, to check DDP replicas agree.

Set `LEANBERT_DUMP_RANK_STATE=<folder>` and every process writes
`<folder>/rank<process_index>.safetensors` when training ends (the unwrapped model's state dict).
Comparing the files shows whether all replicas hold the same weights (they must, under DDP). Off
unless the variable is set; the DDP test uses it.

Cost: one state-dict write per rank at the end of training.
"""

from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import save_file
from transformers import TrainerCallback

ENV_VAR = "LEANBERT_DUMP_RANK_STATE"


class RankStateDumpCallback(TrainerCallback):
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        module = getattr(model, "module", model)  # DDP wraps the model in .module
        # clone: tied weights share storage, which safetensors refuses to write twice
        tensors = {name: tensor.detach().cpu().clone().contiguous() for name, tensor in module.state_dict().items()}
        save_file(tensors, str(self.folder / f"rank{args.process_index}.safetensors"))


def rank_state_dump_from_env() -> list[TrainerCallback]:
    folder = os.environ.get(ENV_VAR)
    return [RankStateDumpCallback(folder)] if folder else []
