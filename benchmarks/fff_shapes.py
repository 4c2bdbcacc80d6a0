"""Trees against depth (UltraFastBERT issue 20): inference speed of FFF layer shapes against dense.

One FFF layer of each shape (trees x depth; width 768) and the transformers-style dense
feed-forward 768 -> 3072 -> 768 on the same 8,192 tokens, all interleaved in one process
(`leanbert.bench.timing.interleaved_medians`), inference mode. A token's cost is trees x (depth+1)
neurons; the parameters are trees x (2^(depth+1) - 1) neurons. Freed memory is kept for reuse, as
in `leanbert bench` (`leanbert.allocator`), so the dense layer pays no page faults.

    python benchmarks/fff_shapes.py [--repeats 7]

Writes benchmarks/results/fff_shapes.{json,md}.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHAPES = [(1, 11), (2, 10), (4, 9), (8, 8), (16, 7), (1, 8), (4, 6)]  # (trees, depth)


def main() -> None:
    from leanbert.allocator import keep_freed_memory

    allocator = keep_freed_memory()  # before any large allocation
    import torch
    from torch import nn

    from leanbert.bench import host
    from leanbert.bench.results import write_results
    from leanbert.bench.timing import interleaved_medians
    from leanbert.modeling.ffn import fff_native
    from leanbert.modeling.ffn.fff import FastFeedForward

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()

    torch.manual_seed(0)
    width = 768
    x = torch.randn(args.tokens, width)
    layers = {"dense": nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))}
    layers.update({f"{k}x{d}": FastFeedForward(width, d, k) for k, d in SHAPES})
    with torch.inference_mode():
        seconds = interleaved_medians({name: (lambda layer=layer: layer(x)) for name, layer in layers.items()},
                                      repeats=args.repeats)
    shapes = {
        f"{k}x{d}": {"trees": k, "depth": d, "neurons": k * (2 ** (d + 1) - 1), "used_per_token": k * (d + 1),
                     "ms": round(1e3 * seconds[f"{k}x{d}"], 2),
                     "speedup_vs_dense": round(seconds["dense"] / seconds[f"{k}x{d}"], 1)}
        for k, d in SHAPES
    }
    result = {"tokens": args.tokens, "width": width, "threads": torch.get_num_threads(), "host": host.describe(),
              "fff_forward": fff_native.backend(), "allocator": allocator,
              "dense_ms": round(1e3 * seconds["dense"], 1), "shapes": shapes}
    write_results(args.results, "fff_shapes", result, "FFF layer shapes (trees x depth) against dense, inference")
    for name, row in shapes.items():
        print(f"{name:>5}: {row['neurons']:5d} neurons, {row['used_per_token']:3d} used, {row['ms']:7.2f} ms, "
              f"{row['speedup_vs_dense']:5.1f}x vs dense ({result['dense_ms']} ms)")


if __name__ == "__main__":
    main()
