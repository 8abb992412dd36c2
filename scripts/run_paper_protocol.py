"""The paper's protocol on a GPU: the holistic method (and, with --compare, the baselines) with the authors' settings.

The same code path as `holomerge-lab run --preset paper --json`; it prints the same JSON (one object per run) and,
with --out, writes the JSON files and the HTML report. Defaults: CLIP ViT-B/16 with OpenAI weights, CIFAR-100 in
10 tasks, the `paper` preset (docs/method.md). Any other `holomerge-lab run` option passes through, e.g.

    python scripts/run_paper_protocol.py --data-root ~/data/cifar --download --out results/cifar100-10
    python scripts/run_paper_protocol.py --stream imagenet-r-domains --data-root ~/data/imagenet-r
    python scripts/run_paper_protocol.py --pretrained /models/ViT-B-16-openai.pt --tasks 20 --compare

The preset runs in fp32, as the authors do (config.PAPER_PROTOCOL lists every setting and its alternative).
Measured on one H200 (random weights, batch 128, per AdamW step, before the training crops were added; rerun
scripts/gpu_check.py for the current figure): ViT-B/32 linearized 0.19 s fp32 / 0.12 s bf16, peak 9.5 / 7.3 GiB;
ViT-B/16 linearized 0.64 s / 0.24 s, peak 32 / 24 GiB. On a 16 GB GPU, B/16 therefore needs --precision bf16
--batch-size 64 (13.5 GiB), which changes the numerics, Adam's v and the number of steps: say so when you report.
"""

from __future__ import annotations

import sys

from holomerge_lab.cli import main

DEFAULTS = {"--preset": "paper", "--backbone": "clip-vit-b-16", "--stream": "cifar100", "--tasks": "10"}


def protocol_argv(argv: list[str]) -> list[str]:
    """`holomerge-lab run|compare` arguments: the paper's defaults, overridden by any option given in argv."""
    command = "compare" if "--compare" in argv else "run"
    argv = [a for a in argv if a != "--compare"]
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    defaults = [x for k, v in DEFAULTS.items() if k not in given for x in (k, v)]
    return [command, *defaults, *argv, *([] if "--json" in argv else ["--json"])]


if __name__ == "__main__":
    sys.exit(main(protocol_argv(sys.argv[1:])))
