"""The run's log as JSON Lines: `<output_dir>/log_history.jsonl`, one Trainer log record per line.

Each line is one entry of Trainer's `state.log_history` (loss, learning_rate, grad_norm,
tokens_per_second, epoch, step; eval_loss and eval_perplexity on evaluation lines), written by rank 0
as it happens, so a report can plot a run while it is still going.

Resuming keeps the file consistent with the checkpoint: at train start the file is rewritten
(atomically) from the restored `log_history`, which drops the lines a killed run wrote after its
last checkpoint, and then appended to as before.

Cost: one small append per log event.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback

from leanbert.atomic_io import atomic_write_text

LOG_FILE_NAME = "log_history.jsonl"


class JsonlLogCallback(TrainerCallback):
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            atomic_write_text(self.path, "".join(json.dumps(entry) + "\n" for entry in state.log_history))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and state.log_history:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(state.log_history[-1]) + "\n")


def read_log(path: str | Path) -> list[dict]:
    """The records of a log_history.jsonl file (a partly written last line is skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
