"""The unchanged `leanbert pretrain` command under torchrun: 2 CPU processes (DDP over gloo).

Both ranks must end with identical weights (each dumps its replica through the documented debugging
aid LEANBERT_DUMP_RANK_STATE), and only rank 0 writes checkpoints, logs, the final model and the
printed metrics.
"""

from __future__ import annotations

import json
import subprocess

import torch
from safetensors.torch import load_file

from leanbert.train.jsonl_log import read_log
from leanbert.train.rank_state_dump import ENV_VAR
from tiny_run import PYTHON, subprocess_env, write_recipe


def test_two_process_cpu_pretraining_keeps_replicas_identical(tmp_path):
    recipe = write_recipe(tmp_path, training={"max_steps": 12, "save_steps": 6, "logging_steps": 3})
    out, dumps = tmp_path / "run", tmp_path / "ranks"
    env = subprocess_env()
    env[ENV_VAR] = str(dumps)
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "leanbert.cli", "pretrain", str(recipe), "--output-dir", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    rank0, rank1 = (load_file(dumps / f"rank{r}.safetensors") for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    max_diff = max((rank0[k] - rank1[k]).abs().max().item() for k in rank0)
    print(f"DDP replicas max abs diff: {max_diff}")
    assert max_diff == 0.0
    final = load_file(out / "final" / "model.safetensors")
    assert all(torch.equal(final[k], rank0[k]) for k in final)
    initial_like = load_file(out / "checkpoint-6" / "model.safetensors")
    assert any(not torch.equal(initial_like[k], final[k]) for k in final), "training must have moved the weights"

    # DDP really ran: 2 x 8 blocks per optimizer step, both ranks' RNG states in each checkpoint
    state = json.loads((out / "checkpoint-12" / "trainer_state.json").read_text())
    assert state["train_batch_size"] == 8 and state["global_step"] == 12
    for step in (6, 12):
        assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in (out / f"checkpoint-{step}").iterdir()}
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "checkpoint-12", "checkpoint-6", "final", "log_history.jsonl", "metrics.json", "recipe.yaml"]

    # only rank 0 logs: every step once in the JSONL log, metrics printed once
    steps = [r["step"] for r in read_log(out / "log_history.jsonl") if "loss" in r]
    assert steps == [3, 6, 9, 12]
    tokens = [r["num_input_tokens_seen"] for r in read_log(out / "log_history.jsonl") if "loss" in r]
    assert tokens[-1] > 12 * 8 * 16, "token counts are gathered over both ranks"
    assert done.stdout.count('"global_step"') == 1

