"""The regime map (issue 28): each stage's paired effect at every grid point, and the mechanisms on the same seeds.

The grid is `holomerge_lab.analysis.regime.GRID` (both demo streams; one dial moved from the notebooks' settings at
a time). Runs accumulate in <out>/effects.json (one row per point, stage switches and seed; through the task cache
and worker processes, as the other searches: a rerun runs only what is missing) and <out>/mechanisms.json (one row
per point and seed). The tables go to <out>.md (benchmarks/regime_map.md): the effects with Holm's verdicts over
each stream's points, the mechanisms, and whether each mechanism tracks its effect. Notebook 09 reads these files.

    python benchmarks/regime_map.py [--seeds 0 1 2] [--points 0 3 ...] [--mechanism-seeds 0 1 2] [--workers 2]
    python benchmarks/regime_map.py --smoke --out DIR     # the reduced grid the test suite runs (tiny sizes)
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import seeded_search

from holomerge_lab.analysis import reading, regime
from holomerge_lab.analysis.sweep import _init_worker
from holomerge_lab.experiment.config import RunConfig
from holomerge_lab.files import atomic_write_text

HERE = Path(__file__).parent
COMMAND = "python benchmarks/regime_map.py"
OUT = HERE / "regime_map"


def _mechanism_row(job: tuple[str, int, dict]) -> dict:
    name, seed, config = job
    return {"candidate": name, "seed": seed, **regime.mechanisms(RunConfig(**config))}


def run_mechanisms(grid, base: dict, seeds, path: Path, workers: int) -> list[dict]:
    """The mechanisms of every (point, seed) `path` does not hold yet, `workers` at a time; saved after each."""
    rows = seeded_search.load(path)
    done = {(r["candidate"], r["seed"]) for r in rows}
    jobs = [(p.name, s, vars(p.config(s, base))) for s in seeds for p in grid if p.measured and (p.name, s) not in done]
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(jobs) or 1)), initializer=_init_worker) as pool:
        for row in pool.map(_mechanism_row, jobs):
            rows.append(row)
            atomic_write_text(path, json.dumps(rows, indent=1))
            print(f"mechanisms: {len(rows)} rows ({row['candidate']}, seed {row['seed']})", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict], grid) -> list[dict]:
    """The effects table's rows: per stream and effect, each point's paired effect with its raw and Holm verdicts."""
    return [{
        "stream": e["stream"], "effect": e["effect"], "dial": e["dial"], "value": e["value"], "n": len(e["seeds"]),
        "Δ ACC (points)": f"{100 * e['mean']:+.2f} ± {100 * e['half_width']:.2f}",
        "adjusted interval": f"± {100 * e['adjusted_half_width']:.2f}", "p": f"{e['p']:.3f}",
        "Holm p": f"{e['p_holm']:.3f}", "verdict": regime.VERDICT_WORDS.get(e["verdict"], e["verdict"]),
        "verdict (Holm)": regime.VERDICT_WORDS.get(e["verdict_holm"], e["verdict_holm"]),
    } for e in regime.effects(rows, grid)]  # fmt: skip


def mechanism_table(rows: list[dict], grid) -> list[dict]:
    """Each point's mechanisms, the mean over the seeds measured."""
    means = {key: regime.point_means(rows, key) for key in regime.MECHANISMS}
    return [{"point": p.name, "seeds": sum(r["candidate"] == p.name for r in rows),
             **{k: f"{means[k][p.name]:.3f}" for k in regime.MECHANISMS}}
            for p in grid if p.name in means[regime.MECHANISMS[0]]]  # fmt: skip


def write(effect_rows: list[dict], mechanism_rows: list[dict], grid, path: Path) -> str:
    """The map as markdown: the effects, the mechanisms, and whether each mechanism tracks its stage's effect."""
    effects = regime.effects(effect_rows, grid)
    tracking = [reading.association(*regime.pairs(effects, mechanism_rows, effect, key, stream), key,
                                    f"{stream or 'both streams'}: stage {effect}'s effect")
                for effect, key in regime.TRACKS for stream in (None, regime.CIL)]  # fmt: skip
    text = "\n".join([
        f"# The regime map (`{COMMAND}`)", "", "## Paired effects of each stage (on − off, per seed)", "",
        *seeded_search.markdown(table(effect_rows, grid)), "", "## Mechanisms (mean over the seeds measured)", "",
        *seeded_search.markdown(mechanism_table(mechanism_rows, grid)), "",
        "## Does the mechanism track the effect across the grid points?", "", *(f"- {t}" for t in tracking), "",
    ])  # fmt: skip
    atomic_write_text(path, text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = seeded_search.parser(__doc__)
    parser.set_defaults(seeds=[0, 1, 2])
    parser.add_argument("--points", nargs="+", type=int, help="indices into the grid (default: all)")
    parser.add_argument("--mechanism-seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--smoke", action="store_true", help="the reduced grid at tiny sizes (what the tests run)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder of the results (default: {OUT})")
    args = parser.parse_args(argv)
    grid, base = (regime.SMOKE_GRID, regime.SMOKE_BASE) if args.smoke else (regime.GRID, regime.BASE)
    chosen = [p for i, p in enumerate(grid) if args.points is None or i in args.points]
    args.out.mkdir(parents=True, exist_ok=True)
    candidates = {p.name: {"stream": p.stream, **base, **dict(p.overrides)} for p in chosen}
    methods = [{"name": name, "method": "holistic", **switches} for name, switches in regime.METHODS.items()]
    rows = seeded_search.run_search(candidates, methods, args.seeds, args.out / "effects.json", workers=args.workers)
    if args.mechanism_seeds:
        run_mechanisms(chosen, base, args.mechanism_seeds, args.out / "mechanisms.json", args.workers)
    mechanism_rows = seeded_search.load(args.out / "mechanisms.json")
    print(write(rows, mechanism_rows, grid, args.out.with_suffix(".md")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
