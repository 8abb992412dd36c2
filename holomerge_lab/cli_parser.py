"""The command line's parser: every subcommand, every flag with its help, and the argparse types that refuse a bad
value in one line (exit 2) before anything runs. `cli.py` runs what it parses."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path

from .data.streams import STREAMS
from .experiment.config import METHODS, PRESETS
from .method.align import LOSSES
from .models.backbone import PRECISIONS
from .models.zoo import BACKBONES


def _one_of(names: Iterable[str]) -> str:
    """'one of: a | b | c': the choices a flag's help lists, from the constants the settings are checked against."""
    return "one of: " + " | ".join(names)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        self.exit(2, f"holomerge-lab: error: {message}\n")


def _whole_number(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum` (`what` says so when it is not)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what}, got {value}")
        return value

    return parse


_positive_int = _whole_number(1, "expected a number of at least 1")
_seed = _whole_number(0, "a seed is a whole number >= 0")


def _order(text: str) -> list[int]:
    try:
        return [int(i) for i in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of whole numbers, got {text!r}") from None


def _add_seeds_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--seeds", nargs="+", type=_seed, metavar="SEED",
        help="run every row once per seed; tables show mean ± 95%% CI and paired per-seed effects",
    )  # fmt: skip
    p.add_argument(
        "--no-task-cache", action="store_true",
        help="fine-tune every row's tasks itself (default: rows with identical fine-tuning share it on disk)",
    )  # fmt: skip


def _margin(text: str) -> float:
    """An argparse type: an equivalence margin in points of accuracy (0 < m ≤ 100), returned as a fraction."""
    try:
        points = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of points, got {text!r}") from None
    if not 0 < points <= 100:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"a margin is in (0, 100] points of accuracy, got {text}")
    return points / 100


def _add_margin_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--margin", type=_margin, default=1.0 / 100, metavar="POINTS",
                   help="equivalence margin of the verdicts, in points of accuracy (default: 1): 'equivalent within "
                        "±m' when the two one-sided tests reject a difference of m or more")  # fmt: skip


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stream", default="split-animal", help=f"task stream (`holomerge-lab list` describes each), "
                   f"{_one_of(STREAMS)} (default: split-animal)")  # fmt: skip
    p.add_argument(
        "--preset",
        default="quick",
        help=f"{_one_of(PRESETS)} (default: quick). paper: the authors' CLIP settings, each stream "
        "as their scripts ran it (on domain-incremental streams their plain-interpolation ablation); paper-method: "
        "the same with the full method on every stream. Values, defaults and ranges: "
        "holomerge_lab/experiment/config.py",
    )
    p.add_argument("--tasks", type=_positive_int, help="number of tasks (default: all the stream has)")
    p.add_argument("--train-per-task", type=_positive_int, help="training images per task")
    p.add_argument("--test-per-task", type=_positive_int, help="test images per task")
    p.add_argument(
        "--order", type=_order, metavar="IDS",
        help="CIL: a comma list of all class ids, cut into tasks in that order (default: the stream's own, e.g. "
        "split-mnist-fashion-animal's confusion-aware one; 0,1,2,… is the label order); DIL: the domain order",
    )  # fmt: skip
    p.add_argument("--seed", type=_seed, help="seed of the data subsets, mini-batches and initial heads (default: 0)")
    p.add_argument("--alpha", type=float, help="weight of the new task in a merge, in (0, 1]")
    p.add_argument("--lr", type=float, help="fine-tuning learning rate")
    p.add_argument("--steps", type=_positive_int, help="fine-tuning steps per task")
    p.add_argument(
        "--epochs",
        type=_positive_int,
        help="fine-tuning epochs per task, when --steps is not given (paper: 10)",
    )
    p.add_argument("--start", help="where task t's fine-tuning starts, one of: merged | pretrained | previous "
                   "(default: the method's own)")  # fmt: skip
    p.add_argument("--batch-size", type=_positive_int, help="fine-tuning batch size")
    p.add_argument("--backbone", default="effnet-lite0", help=f"{_one_of(BACKBONES)} (default: effnet-lite0)")
    p.add_argument(
        "--pretrained", help="CLIP weights: an open_clip tag (default openai), a checkpoint PATH, or random"
    )
    p.add_argument(
        "--trainable-from", type=int, help="first trained block (earlier blocks: frozen, cached trunk)"
    )
    p.add_argument(
        "--data-root",
        help="folder of a file stream: cifar100, imagenet-r, domainnet, office-*, imageclef, cub200, cars",
    )
    p.add_argument("--download", action="store_true", default=None, help="let torchvision fetch CIFAR-100")
    p.add_argument("--device", help="one of: auto | cpu | cuda | cuda:N | mps (default: auto, CUDA when available)")
    p.add_argument(
        "--precision", help=f"{_one_of(PRECISIONS)}: fp32 for paper, quick and full; auto is bf16 on a GPU "
        "that has it"
    )
    p.add_argument("--variant", default="faithful", help="one of: faithful | clean (default: faithful, the "
                   "authors' raw v without eps; clean: bias-corrected v and eps)")  # fmt: skip
    p.add_argument(
        "--center", action="store_true", help="center features by the first task's mean θ0 feature"
    )
    p.add_argument("--align-parameter", help="what alignment trains, one of: bias | projection (default: bias)")
    p.add_argument("--align-teacher", help="whose features alignment pulls towards, one of: previous (the last "
                   "merged model, the authors') | current (the new task's fine-tuned model) (default: previous)")
    p.add_argument("--align-loss", help=f"alignment loss, {_one_of(LOSSES)} (default: mse)")
    p.add_argument("--align-lr", type=float, help="alignment learning rate (paper: 1e-7)")
    p.add_argument(
        "--align-steps", type=int, help="alignment steps per task (default: one pass over the task)"
    )
    p.add_argument("--align-weight-decay", type=float, help="alignment AdamW weight decay (paper: 0.01)")
    p.add_argument("--align-grad-clip", type=float, help="alignment gradient-norm clip (paper: 1.0)")
    p.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, default=None,
        help="open_clip's random training crops (CLIP, trainable-from 0; paper: on)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, help="folder for the JSON and the HTML report")
    p.add_argument("--force", action="store_true", help="overwrite results already in --out")
    p.add_argument(
        "--resume", type=Path, metavar="DIR",
        help="continue the interrupted run whose --out was DIR, with its saved settings",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object per run on stdout")
    _add_margin_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="holomerge-lab", description="Continual model merging, hands on.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="one method on one stream")
    run.add_argument("--method", default="holistic", help=f"{_one_of(METHODS)} (default: holistic)")
    for stage in ("pre", "during", "post"):
        run.add_argument(f"--no-{stage}", action="store_true", help=f"switch stage '{stage}' off (holistic)")
    _add_seeds_option(run)
    _add_run_options(run)
    compare = commands.add_parser("compare", help="several methods on one stream, one table")
    compare.add_argument(
        "--methods",
        nargs="+",
        help=f"methods to compare, each {_one_of(METHODS)}; or all (default: the core baselines and holistic)",
    )
    _add_seeds_option(compare)
    _add_run_options(compare)
    summarize = commands.add_parser(
        "summarize", help="the tables of runs saved in a --out folder, over seeds"
    )
    summarize.add_argument("folder", type=Path, help="a folder written by run/compare --out")
    summarize.add_argument(
        "--write", action="store_true",
        help="also rewrite the folder's summary.json and report.html from every run JSON in it",
    )  # fmt: skip
    _add_margin_option(summarize)
    commands.add_parser("list", help="the streams, methods, backbones and presets")
    sweep = commands.add_parser("sweep", help="a grid: stages × alpha × seeds × task orders, in parallel")
    sweep.add_argument("--method", default="holistic", help=f"{_one_of(METHODS)} (default: holistic)")
    sweep.add_argument(
        "--stages", nargs="+", default=["pre,during,post"], help="each: a comma list of stages, or none"
    )
    sweep.add_argument("--alphas", nargs="+", type=float, help="merge weights α (default: the preset's)")
    sweep.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's)")
    sweep.add_argument(
        "--orders", nargs="+", default=["default"], help="each: default, or a comma list of task ids"
    )
    sweep.add_argument("--workers", type=_positive_int, help="local processes (default: one per core)")
    sweep.add_argument("--ray", metavar="ADDRESS", help="run on Ray: auto, local, or a cluster address")
    _add_run_options(sweep)
    bench = commands.add_parser("bench", help="speed and memory measurements (benchmarks/RESULTS.md)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--memory-tasks", nargs="+", type=_positive_int, default=[5, 20, 50, 100],
                       help="stream lengths at which the carried state's bytes are measured (default: 5 20 50 100)")
    bench.add_argument("--rounds", type=_positive_int, default=5, help="interleaved rounds per ratio")
    parser.commands = commands.choices
    return parser
