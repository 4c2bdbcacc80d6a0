"""A run killed with SIGKILL after its first checkpoint and then resumed ends with the same weights as an
uninterrupted run (<= 1e-6; on CPU it is exact)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from leanbert.train.jsonl_log import read_log
from tiny_run import PYTHON, subprocess_env, write_recipe

MAX_STEPS = 120
SAVE_STEPS = 20


def _pretrain(recipe: Path, output_dir: Path, *extra: str) -> list[str]:
    return [PYTHON, "-m", "leanbert.cli", "pretrain", str(recipe), "--output-dir", str(output_dir), *extra]


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _kill_after_first_checkpoint(cmd: list[str], output_dir: Path) -> None:
    process = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while not (output_dir / f"checkpoint-{SAVE_STEPS}").exists():
            if process.poll() is not None:
                pytest.fail(f"run ended before its first checkpoint: {process.stderr.read().decode()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint appeared in time")
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    recipe = write_recipe(tmp_path, training={
        "max_steps": MAX_STEPS, "save_steps": SAVE_STEPS, "logging_steps": 10, "per_device_train_batch_size": 8,
    })
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    _run(_pretrain(recipe, reference))

    _kill_after_first_checkpoint(_pretrain(recipe, interrupted), interrupted)
    assert not (interrupted / "final").exists(), "the kill must land mid-run"
    checkpoints = sorted(int(p.name.split("-")[1]) for p in interrupted.glob("checkpoint-*"))
    assert checkpoints and checkpoints[-1] < MAX_STEPS
    for step in checkpoints:  # atomic: every published checkpoint is complete
        assert (interrupted / f"checkpoint-{step}" / "trainer_state.json").is_file()
    # a half-written staging folder, as a kill during a save would leave, is ignored and cleared
    stale = interrupted / ".staging" / f"checkpoint-{MAX_STEPS}"
    stale.mkdir(parents=True, exist_ok=True)
    (stale / "model.safetensors").write_bytes(b"partial")

    _run(_pretrain(recipe, interrupted, "--resume"))

    want = load_file(reference / "final" / "model.safetensors")
    got = load_file(interrupted / "final" / "model.safetensors")
    assert want.keys() == got.keys()
    max_diff = max((want[k] - got[k]).abs().max().item() for k in want)
    print(f"resume max abs weight diff: {max_diff:.3g} (killed after checkpoint {checkpoints[-1]})")
    assert max_diff <= 1e-6
    assert not (interrupted / ".staging").exists()

    # the log matches too: no duplicated steps from the killed run, same losses
    def losses(folder):
        return [(r["step"], r["loss"]) for r in read_log(folder / "log_history.jsonl") if "loss" in r]

    assert [s for s, _ in losses(interrupted)] == list(range(10, MAX_STEPS + 1, 10))
    for (_, a), (_, b) in zip(losses(reference), losses(interrupted)):
        assert a == pytest.approx(b, abs=1e-6)
    assert torch.isfinite(torch.tensor([b for _, b in losses(interrupted)])).all()

    # metrics.json says which steps its train_loss (Trainer's, over the steps one call ran) covers
    def first_step(folder):
        return json.loads((folder / "metrics.json").read_text())["train_loss_first_step"]

    assert first_step(reference) == 1
    assert first_step(interrupted) == checkpoints[-1] + 1
