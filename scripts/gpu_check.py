"""One short GPU measurement: full-size CLIP ViT-B/32 (random weights: nothing can be downloaded on the test
machine), linearized vs standard fine-tuning step time and peak memory, on a few small synthetic tasks.

Prints one JSON line. Uses the package's own pieces (backbone, forward_fn, fine_tune), so it times what a run does.

    python scripts/gpu_check.py [--tasks 3] [--steps 8] [--batch-sizes 128] [--precisions fp32 bf16]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from holomerge_lab.backbones import build_backbone
from holomerge_lab.finetune import fine_tune
from holomerge_lab.heads import head_logits
from holomerge_lab.linearize import forward_fn

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def measure(
    backbone, theta0, tangent: bool, precision: str, batch_size: int, tasks: int, steps: int, device
) -> dict:
    """Mean seconds per AdamW step (after one warm-up task) and peak GPU memory over `tasks` synthetic tasks."""
    backbone.top.autocast = PRECISIONS[precision]
    forward = forward_fn(backbone.top, theta0, tangent=tangent)
    generator = torch.Generator().manual_seed(0)
    n = 2 * batch_size
    images = torch.randint(0, 256, (tasks + 1, n, 3, 32, 32), dtype=torch.uint8, generator=generator).to(
        device
    )
    labels = torch.randint(0, 10, (tasks + 1, n), generator=generator).to(device)
    head = F.normalize(torch.randn(10, backbone.embed_dim, generator=generator), dim=-1).to(device)
    bias = {backbone.bias: theta0[backbone.bias]}
    start = {k: v for k, v in theta0.items() if k != backbone.bias}
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    seconds = []
    for t in range(tasks + 1):  # task 0 warms up kernels and the allocator; not timed
        torch.cuda.synchronize()
        began = time.perf_counter()
        result = fine_tune(
            lambda p, x: forward({**p, **bias}, x), start, images[t], labels[t],
            lambda z: head_logits(z, head, 100.0), steps=steps, lr=1e-5, batch_size=batch_size,
            weight_decay=0.1, grad_clip=1.0, warmup_steps=2, cosine=True, seed=t,
        )  # fmt: skip
        torch.cuda.synchronize()
        if t > 0:
            seconds.append((time.perf_counter() - began) / steps)
        start = result.params
    return {
        "mode": "linearized" if tangent else "standard",
        "precision": precision,
        "batch_size": batch_size,
        "step_s": round(sum(seconds) / len(seconds), 4),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "final_loss": round(result.losses[-1], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="clip-vit-b-32")
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    args = parser.parse_args()
    assert torch.cuda.is_available(), "this check needs a CUDA GPU"
    backbone = build_backbone(args.backbone, pretrained="random")  # random weights, full size
    backbone.top.cuda()
    named = dict(backbone.top.named_parameters())
    theta0 = {n: named[n].detach().clone() for n in (*backbone.trainable, backbone.bias)}
    rows = []
    for precision in args.precisions:
        for batch_size in args.batch_sizes:
            for tangent in (False, True):
                try:
                    rows.append(
                        measure(
                            backbone, theta0, tangent, precision, batch_size, args.tasks, args.steps, "cuda"
                        )
                    )
                except Exception as e:  # an out-of-memory or an autocast/jvp failure is itself a result
                    rows.append({"mode": "linearized" if tangent else "standard", "precision": precision,
                                 "batch_size": batch_size, "error": f"{type(e).__name__}: {e}"[:300]})  # fmt: skip
                torch.cuda.empty_cache()
    print(json.dumps({
        "device": torch.cuda.get_device_name(), "torch": torch.__version__, "backbone": args.backbone,
        "trainable_params": sum(v.numel() for k, v in theta0.items() if k != backbone.bias),
        "tasks": args.tasks, "steps_per_task": args.steps, "rows": rows,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
