"""A route for the tiny CLIP top's weights that was tried and not taken; writes bench_pairs_by_offset.json.

    OMP_NUM_THREADS=1 PYTHONPATH=benchmarks python benchmarks/bench_pairs_by_offset.py

`fisher_ops.weight_squares` sums S(S+1)/2 pairs of positions one pair at a time. Grouping the pairs by their offset
t − s (S products, each contracting over examples × positions) needs fewer, larger calls; on the ViT's layer shapes
(S = 17 tokens, 256 examples) it is slower than the pair loop, whose matmuls already dominate. Medians of 3 rounds, the two routes interleaved (bench._interleaved).
"""

import json
from functools import partial
from pathlib import Path

import torch

from holomerge_lab.analysis import bench
from holomerge_lab.method import fisher_ops

SHAPES = [(64, 192), (64, 64), (64, 256), (256, 64)]  # in_proj, out_proj, c_fc, c_proj of one block (in -> out)


def by_offset(d: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The pairs of positions, one product per offset r = t − s (d [K, N, G, S, out], x [N, G, S, in])."""
    groups, positions, outputs = d.shape[2], d.shape[3], d.shape[4]
    total = 0
    for r in range(positions):
        left = (d[:, :, :, : positions - r] * d[:, :, :, r:]).sum(0)  # [N, G, S − r, out]
        right = x[:, :, : positions - r] * x[:, :, r:]  # [N, G, S − r, in]
        pair = left.permute(1, 3, 0, 2).reshape(groups, outputs, -1) @ right.transpose(0, 1).reshape(
            groups, -1, right.shape[-1]
        )
        total = total + (pair if r == 0 else 2 * pair)
    return total.clamp_min(0)


def main() -> None:
    machine = bench.machine()  # before: its load average is the quiet the run began in
    torch.manual_seed(0)
    rows = []
    for inputs, outputs in SHAPES:
        for classes in (10, 1):
            d, x = torch.randn(classes, 256, 1, 17, outputs), torch.randn(256, 1, 17, inputs)
            ours, offset = fisher_ops.weight_squares(d, x), by_offset(d, x)
            ours_s, offset_s, ratio = bench._interleaved(
                partial(fisher_ops.weight_squares, d, x), partial(by_offset, d, x), rounds=3
            )  # fmt: skip
            rows.append({
                "in": inputs, "out": outputs, "classes": classes, "positions": 17, "examples": 256,
                "weight_squares_s": ours_s, "by_offset_s": offset_s, "by_offset_over_weight_squares": ratio,
                "relative_difference": float((ours - offset).abs().max() / ours.abs().max()),
            })  # fmt: skip
            print(rows[-1])
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps({"command": __doc__.split("\n")[2].strip(), "machine": machine, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
