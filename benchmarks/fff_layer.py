"""Fast feed-forward layer vs BERT's dense feed-forward, one layer on CPU.

Contenders, all float32 on the same tokens (T, W):
  dense   transformers-style Linear(W, 4W) -> GELU -> Linear(4W, W): 16 T W^2 FLOPs forward
  fff     FastFeedForward(W, depth, trees), numba kernels: 4 T K (D+1) W FLOPs forward
  gather  the same layer through plain PyTorch gathers (impl="gather"), for context

Inference runs under torch.inference_mode; a training step is forward + backward of
sum(y * R) into the input and every parameter. Each repeat times every contender once, in
turn, so that machine noise (other processes, clock changes) hits them alike; the reported
figures are medians over repeats, and the speedups are ratios of those medians.

Run: python benchmarks/fff_layer.py [--tokens 8192 --repeats 9]; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from torch import nn

from leanbert.modeling.ffn.fff import FastFeedForward


def _dense(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _inference(layer: nn.Module, x: torch.Tensor):
    def call():
        with torch.inference_mode():
            layer(x)

    return call


def _training_step(layer: nn.Module, x: torch.Tensor, probe: torch.Tensor):
    def call():
        layer.zero_grad(set_to_none=True)
        xg = x.detach().requires_grad_(True)
        (layer(xg) * probe).sum().backward()

    return call


def run(tokens: int = 8192, width: int = 768, depth: int = 11, trees: int = 1, repeats: int = 9, seed: int = 0) -> dict:
    """Median seconds per call for each contender, and the dense/fff speedup ratios."""
    torch.manual_seed(seed)
    x = torch.randn(tokens, width)
    probe = torch.randn(tokens, width)
    dense = _dense(width)
    fff = FastFeedForward(width, depth, trees, impl="kernel")
    gather = FastFeedForward(width, depth, trees, impl="gather")
    gather.load_state_dict(fff.state_dict())

    # dense training is the slowest call by far (~1-2 s at the default size), so fewer of them
    contenders = {
        "dense_inference_s": _inference(dense, x),
        "fff_inference_s": _inference(fff, x),
        "gather_inference_s": _inference(gather, x),
        "dense_training_step_s": _training_step(dense, x, probe),
        "fff_training_step_s": _training_step(fff, x, probe),
        "gather_training_step_s": _training_step(gather, x, probe),
    }
    for call in contenders.values():  # warm-up: numba compilation/cache load, allocator, caches
        call()
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, call in contenders.items():
            times[name].append(_seconds(call))
    result = {name: statistics.median(ts) for name, ts in times.items()}
    result.update(
        {
            "layer_inference_speedup": result["dense_inference_s"] / result["fff_inference_s"],
            "layer_training_speedup": result["dense_training_step_s"] / result["fff_training_step_s"],
            "gather_inference_speedup": result["dense_inference_s"] / result["gather_inference_s"],
            "gather_training_speedup": result["dense_training_step_s"] / result["gather_training_step_s"],
            "fff_inference_min_s": min(times["fff_inference_s"]),
            "dense_inference_min_s": min(times["dense_inference_s"]),
            "tokens": tokens,
            "width": width,
            "depth": depth,
            "trees": trees,
            "repeats": repeats,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
        }
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--depth", type=int, default=11)
    parser.add_argument("--trees", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    print(json.dumps(run(args.tokens, args.width, args.depth, args.trees, args.repeats), indent=1))


if __name__ == "__main__":
    main()
