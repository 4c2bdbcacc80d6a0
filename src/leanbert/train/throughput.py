"""Training throughput in the logs: `tokens_per_second` on every training log line.

    tokens_per_second = (non-padding tokens over all ranks since the last log)
                        / (wall seconds spent in training steps since the last log)

The token count is Trainer's own (`include_num_input_tokens_seen="non_padding"`: the attention-mask
sum, gathered over DDP ranks). The clock runs from step end to step end, so it covers fetching and
collating the batch, forward, backward and the optimizer step, and it is restarted after an
evaluation or a checkpoint save, so those do not count as training time.

The value is written into the `logs` dict (so the progress bar and the JSONL log show it) and into
`state.log_history` (so `trainer_state.json` keeps it for plots).

Cost: two `time.perf_counter()` calls per step.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback


class ThroughputCallback(TrainerCallback):
    def __init__(self):
        self._mark = None
        self._seconds = 0.0
        self._tokens_at_last_log = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._mark = time.perf_counter()
        self._seconds = 0.0
        self._tokens_at_last_log = state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if self._mark is not None:
            self._seconds += now - self._mark
        self._mark = now

    def _restart_clock(self, *args, **kwargs):
        self._mark = time.perf_counter()

    on_evaluate = _restart_clock
    on_save = _restart_clock

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs or self._tokens_at_last_log is None:
            return
        tokens = state.num_input_tokens_seen - self._tokens_at_last_log
        if self._seconds > 0 and tokens > 0:
            rate = round(tokens / self._seconds, 1)
            logs["tokens_per_second"] = rate
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1]["tokens_per_second"] = rate
        self._tokens_at_last_log = state.num_input_tokens_seen
        self._seconds = 0.0
