"""One short device check of the paper protocol: the step time of a linearized CLIP fine-tuning step as `--preset
paper` runs it (fp32, batch 128, AdamW lr 1e-5 / decay 0.1, clip 1.0, warm-up + cosine, open_clip's random training
crops of non-square images), and, given a local checkpoint and a data folder, that checkpoint's zero-shot accuracy.

Prints one JSON line. Uses the package's own pieces (backbone, forward_fn, fine_tune, the crops, run), so it times
what a run does. Full-size models use random weights unless --checkpoint is given (nothing can be downloaded on a
test machine).

    python scripts/gpu_check.py                                    # B/16 paper step time in fp32 (CUDA)
    python scripts/gpu_check.py --precisions fp32 bf16 --standard  # also bf16, and the non-linearized step
    python scripts/gpu_check.py --checkpoint ViT-B-16.pt --stream imagenet-r --data-root ~/data/imagenet-r
    python scripts/gpu_check.py --backbone tiny-clip --device cpu --steps 2 --batch-size 8   # the CPU smoke path
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from holomerge_lab.experiment.config import PRESETS, RunConfig
from holomerge_lab.experiment.pipeline import run
from holomerge_lab.method.finetune import fine_tune
from holomerge_lab.method.linearize import forward_fn
from holomerge_lab.models.backbone import resolve_device
from holomerge_lab.models.heads import head_logits
from holomerge_lab.models.zoo import build_backbone

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
FILE_SIZE = (375, 500)  # a typical non-square photo (height, width): the crops are drawn on this geometry


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_time(backbone, theta0, *, tangent: bool, precision: str, batch_size: int, steps: int, device) -> dict:
    """Mean seconds per paper-protocol AdamW step (after a warm-up call) and the peak GPU memory."""
    paper = PRESETS["paper"]
    backbone.top.autocast = DTYPES[precision] if device.type == "cuda" else None
    forward = forward_fn(backbone.top, theta0, tangent=tangent)
    generator = torch.Generator().manual_seed(0)
    size = backbone.image_size
    n = 2 * batch_size
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator).to(device)
    sizes = torch.tensor([FILE_SIZE] * n)
    labels = torch.randint(0, 10, (n,), generator=generator).to(device)
    head = F.normalize(torch.randn(10, backbone.embed_dim, generator=generator), dim=-1).to(device)
    bias = {backbone.bias: theta0[backbone.bias]}
    start = {k: v for k, v in theta0.items() if k != backbone.bias}

    def crops(x, indices, step):
        return backbone.training_view(x, sizes[indices.cpu()], seed=step)

    def train(count: int):
        return fine_tune(
            lambda p, x: forward({**p, **bias}, x), start, images, labels,
            lambda z: head_logits(z, head, paper["logit_scale"]), steps=count, lr=paper["lr"],
            batch_size=batch_size, weight_decay=paper["weight_decay"], grad_clip=paper["grad_clip"],
            warmup_steps=paper["warmup_steps"], cosine=paper["cosine"], seed=0, augment=crops,
        )  # fmt: skip

    train(1)  # kernels, allocator, jit: not timed
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    began = time.perf_counter()
    result = train(steps)
    _sync(device)
    return {
        "mode": "linearized" if tangent else "standard", "precision": precision, "batch_size": batch_size,
        "step_s": round((time.perf_counter() - began) / steps, 4),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
        "final_loss": round(result.losses[-1], 4),
    }  # fmt: skip


def zero_shot(args) -> dict:
    """The checkpoint's zero-shot accuracy on a stream, as `--preset paper --method zero-shot` computes it:
    `acc` (mean over tasks of per-task accuracy) and the accuracy pooled over the whole test set."""
    config = RunConfig(
        method="zero-shot", preset="paper", backbone=args.backbone, pretrained=args.checkpoint, stream=args.stream,
        data_root=args.data_root, tasks=args.tasks, test_per_task=args.test_per_task, device=args.device,
    )  # fmt: skip
    result = run(config, progress=False)
    return {
        "stream": args.stream, "split": result.split, "acc_mean_over_tasks": round(result.acc, 4),
        "acc_pooled": round(result.joint_accuracy[-1], 4), "seconds": round(result.seconds, 1),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="clip-vit-b-16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=PRESETS["paper"]["batch_size"])
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=list(DTYPES))
    parser.add_argument("--standard", action="store_true", help="also time the non-linearized step")
    parser.add_argument("--checkpoint", help="a local open_clip checkpoint: also measure its zero-shot accuracy")
    parser.add_argument("--stream", default="cifar100")
    parser.add_argument("--data-root")
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--test-per-task", type=int)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA GPU here; pass --device cpu (with --backbone tiny-clip for a quick smoke run)")
    pretrained = args.checkpoint or ("random" if args.backbone != "tiny-clip" else None)
    backbone = build_backbone(args.backbone, pretrained=pretrained)
    backbone.model.to(device)
    named = dict(backbone.top.named_parameters())
    theta0 = {n: named[n].detach().clone() for n in (*backbone.trainable, backbone.bias)}
    rows = []
    for precision in args.precisions:
        for tangent in (True, False) if args.standard else (True,):
            try:
                rows.append(step_time(backbone, theta0, tangent=tangent, precision=precision,
                                      batch_size=args.batch_size, steps=args.steps, device=device))  # fmt: skip
            except Exception as e:  # an out-of-memory or an autocast/jvp failure is itself a result
                rows.append({"mode": "linearized" if tangent else "standard", "precision": precision,
                             "error": f"{type(e).__name__}: {e}"[:300]})  # fmt: skip
            if device.type == "cuda":
                torch.cuda.empty_cache()
    report = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
        "backbone": args.backbone, "weights": args.checkpoint or "random",
        "trainable_params": sum(v.numel() for k, v in theta0.items() if k != backbone.bias),
        "steps": args.steps, "rows": rows,
    }  # fmt: skip
    if args.checkpoint and args.data_root:
        report["zero_shot"] = zero_shot(args)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
