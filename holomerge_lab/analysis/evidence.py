"""Runs over seeds as evidence: each row's metrics as mean ± 95 % CI, and paired per-seed effects.

Works on run JSON (`RunResult.to_json()`, what `--json` prints and `--out` writes), so results from disk, from a
sweep and from a live `compare` aggregate the same way. A row is a run label ("average", "holistic −post");
its seeds are the runs with that label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..errors import UserError
from . import stats

Run = Mapping  # one run's JSON

# The metrics a summary row carries: name -> how to read it from a run's JSON
METRICS: dict[str, Callable[[Run], float]] = {
    "ACC (task mean)": lambda r: r["acc"],
    "ACC (pooled)": lambda r: r.get("acc_pooled", r["joint_accuracy"][-1]),  # older runs: the same number
    "BWT": lambda r: r["bwt"],
    "forgetting (max)": lambda r: r["forgetting"],
}
REFERENCE = "holistic"
STAGE_NAMES = {"pre": "tangent fine-tuning", "during": "v-weighted merge", "post": "alignment"}


def by_label(runs: Sequence[Run]) -> dict[str, dict[int, Run]]:
    """label -> seed -> run, in the order the labels first appear; a label with one seed twice is an error."""
    rows: dict[str, dict[int, Run]] = {}
    for r in runs:
        seeds = rows.setdefault(r["label"], {})
        if r["seed"] in seeds:
            raise ValueError(
                f"two runs of {r['label']!r} with seed {r['seed']}: aggregate distinct seeds only"
            )
        seeds[r["seed"]] = r
    return rows


def summarize(runs: Sequence[Run]) -> list[dict]:
    """Per label: n, the seeds, and an Interval per metric; bytes carried after the last task, and whether that is
    constant in T on every seed; mean seconds."""
    out = []
    for label, seeds in by_label(runs).items():
        row = {"label": label, "n": len(seeds), "seeds": sorted(seeds)}
        for name, read in METRICS.items():
            row[name] = stats.interval([read(r) for r in seeds.values()])
        row["bytes carried"] = max(r["state_bytes"][-1] for r in seeds.values())
        row["constant memory"] = all(len(set(r["state_bytes"])) == 1 for r in seeds.values())
        row["seconds"] = sum(r["seconds"] for r in seeds.values()) / len(seeds)
        out.append(row)
    return out


def comparison_name(reference: str, other: str) -> str:
    """'stage post (alignment)' for an ablation of the reference, else 'holistic − average'."""
    prefix = f"{reference} −"
    if other.startswith(prefix) and "−" not in other[len(prefix) :]:
        stage = other[len(prefix) :]
        return f"stage {stage} ({STAGE_NAMES.get(stage, stage)})"
    return f"{reference} − {other}"


def effects(runs: Sequence[Run], reference: str = REFERENCE, metric: str = "ACC (task mean)") -> list[dict]:
    """The reference row against every other row: the paired per-seed difference reference − other of `metric`.

    An ablation row ("holistic −post") so gives the effect of switching that stage on; a baseline row gives how
    much the full method beats it. Empty when there is no reference row."""
    rows = by_label(runs)
    if reference not in rows:
        return []
    read = METRICS[metric]
    ref = {s: read(r) for s, r in rows[reference].items()}
    out = []
    for label, seeds in rows.items():
        if label == reference or not set(seeds) & set(ref):
            continue
        effect = stats.paired(ref, {s: read(r) for s, r in seeds.items()})
        out.append({"comparison": comparison_name(reference, label), "other": label, "metric": metric,
                    "effect": effect})  # fmt: skip
    return out


def summary_table(summary: Sequence[dict]) -> list[dict]:
    """Printable rows: 'mean ± half-width' (95 % t-interval over n seeds)."""
    return [
        {
            "method": row["label"],
            "n": row["n"],
            **{name: stats.format_interval(row[name]) for name in METRICS},
            "bytes carried": row["bytes carried"],
            "Θ(1)?": "yes" if row["constant memory"] else "no",
            "seconds": round(row["seconds"], 1),
        }  # fmt: skip
        for row in summary
    ]


def effects_table(effects_rows: Sequence[dict], margin: float = stats.MARGIN) -> list[dict]:
    """Printable rows of the paired effects, in points of accuracy: the raw 95 % interval, the p of the test of no
    difference (p ≠0) and of the equivalence test at ±margin (p ±m) with their verdict, then the same p-values and
    verdict after Holm's adjustment over the table's rows (the family)."""
    judged = stats.verdicts([e["effect"] for e in effects_rows], margin)
    return [
        {
            "comparison": e["comparison"],
            f"Δ {e['metric']} (points)": stats.format_interval(
                e["effect"].interval, points=True, signed=True, digits=2
            ),
            "n": e["effect"].interval.n,
            "seeds agreeing": f"{e['effect'].agree}/{e['effect'].interval.n}",
            "p ≠0": format_p(v.p),
            "p ±m": format_p(v.p_equivalent),
            "verdict": words(v.raw, e),
            "Holm p ≠0": format_p(v.p_holm),
            "Holm p ±m": format_p(v.p_equivalent_holm),
            "verdict (Holm)": words(v.adjusted, e),
        }  # fmt: skip
        for e, v in zip(effects_rows, judged, strict=True)
    ]


def format_p(p: float) -> str:
    """'0.034', '<0.001', or '–' for an untested row."""
    return "–" if p != p else ("<0.001" if p < 0.001 else f"{p:.3f}")


def words(verdict: str, e: dict) -> str:
    """A verdict in the words of the comparison: a stage helps / hurts, the method is higher / lower."""
    stage = e["comparison"].startswith("stage ")
    if verdict == "a > b":
        return "helps" if stage else "higher"
    if verdict == "a < b":
        return "hurts" if stage else "lower"
    return verdict


def to_json(runs: Sequence[Run], reference: str = REFERENCE, margin: float = stats.MARGIN) -> dict:
    """The aggregate as plain JSON: per row and metric mean / low / high / n, and the paired effects with their
    p-values and verdicts, raw and Holm-adjusted over the effects (NaN p-values of untested rows as null)."""

    def iv(i: stats.Interval) -> dict:
        return {"mean": i.mean, "low": i.low, "high": i.high, "n": i.n}

    def number(p: float) -> float | None:
        return None if p != p else p

    paired = effects(runs, reference)
    judged = stats.verdicts([e["effect"] for e in paired], margin)
    return {
        "confidence": stats.CONFIDENCE,
        "interval": "Student t over seeds",
        "margin": margin,
        "family": "the effects below; Holm's step-down adjustment, difference and equivalence (TOST) tests apart",
        "rows": [
            {**{k: v for k, v in row.items() if k not in METRICS}, **{k: iv(row[k]) for k in METRICS}}
            for row in summarize(runs)
        ],
        "effects": [
            {
                "comparison": e["comparison"],
                "reference": reference,
                "other": e["other"],
                "metric": e["metric"],
                **iv(e["effect"].interval),
                "seeds": list(e["effect"].seeds),
                "positive": e["effect"].positive,
                "negative": e["effect"].negative,
                "p": number(v.p), "p_holm": number(v.p_holm),
                "p_equivalent": number(v.p_equivalent), "p_equivalent_holm": number(v.p_equivalent_holm),
                "verdict": words(v.raw, e), "verdict_holm": words(v.adjusted, e),
            }  # fmt: skip
            for e, v in zip(paired, judged, strict=True)
        ],
    }


def stage_effects(runs: Sequence[Run], metric: str = "ACC (task mean)") -> list[dict]:
    """The main effect of each stage over a full 2³ grid of the holistic method: per seed, the mean of `metric`
    over the four runs with the stage on minus the mean over the four with it off (= the mean of the four pairs
    that differ in that stage alone), and the paired interval of that over the seeds. Every seed must have all
    eight combinations."""
    read = METRICS[metric]
    grid: dict[int, dict[tuple, float]] = {}
    for r in runs:
        cell = grid.setdefault(r["seed"], {})
        key = tuple(bool(r["stages"][s]) for s in STAGE_NAMES)
        if key in cell:
            raise ValueError(f"two runs of stages {key} with seed {r['seed']}: one grid per seed")
        cell[key] = read(r)
    for seed, cell in grid.items():
        if len(cell) != 2 ** len(STAGE_NAMES):
            raise ValueError(f"seed {seed} has {len(cell)} of the {2 ** len(STAGE_NAMES)} stage combinations")
    out = []
    for i, stage in enumerate(STAGE_NAMES):
        on, off = (
            {
                s: sum(v for k, v in cell.items() if k[i] == state) / (len(cell) // 2)
                for s, cell in grid.items()
            }
            for state in (True, False)
        )
        out.append({"comparison": f"stage {stage} ({STAGE_NAMES[stage]}), mean of 4 pairs", "other": stage,
                    "metric": metric, "effect": stats.paired(on, off)})  # fmt: skip
    return out


RUN_KEYS = {"method", "label", "stream", "seed", "acc", "acc_matrix"}  # what a run's JSON must hold to be summarized
# the config fields that differ between the rows of one comparison, and those only some methods read (a row's own
# setting: TIES's λ, MagMax's, OPCM's, the Fisher of fisher and ewc), which must agree only between a row's seeds
ROW_FIELDS = {"method", "pre", "during", "post", "start", "seed"}
METHOD_FIELDS = {"ties_scale", "top_k", "magmax_scale", "opcm_alpha", "fisher_kind", "fisher_examples", "ewc_strength"}


def _differences(a: tuple[Path, dict], b: tuple[Path, dict], ignore: set[str]) -> list[str]:
    (path_a, run_a), (path_b, run_b) = a, b
    one, other = ({k: v for k, v in r.get("config", {}).items() if k not in ignore} for r in (run_a, run_b))
    differ = [f"{k} {one.get(k)!r} in {path_a.name}, {other.get(k)!r} in {path_b.name}"
              for k in sorted(set(one) | set(other)) if one.get(k) != other.get(k)]  # fmt: skip
    if run_a["stream"] != run_b["stream"]:
        differ.insert(0, f"stream {run_a['stream']} in {path_a.name}, {run_b['stream']} in {path_b.name}")
    return differ


def check_one_comparison(named: list[tuple[Path, dict]]) -> None:
    """The runs are rows of one comparison: one stream and the same settings but the method, its stages, its own
    settings and the seed; each row's seeds with the same settings but the seed; one run per row and seed. Else a
    mean would mix runs of other data or settings under one label."""
    seen: dict[tuple[str, int], Path] = {}
    first_of_row: dict[str, tuple[Path, dict]] = {}
    for path, r in named:
        row = first_of_row.setdefault(r["label"], (path, r))
        differ = _differences(named[0], (path, r), ROW_FIELDS | METHOD_FIELDS) or _differences(row, (path, r), {"seed"})
        if differ:
            raise UserError("these runs are not one comparison (" + "; ".join(differ[:3]) + "): summarize a folder "
                            "per stream and setting")  # fmt: skip
        key = (r["label"], r["seed"])
        if key in seen:
            raise UserError(f"{seen[key].name} and {path.name} are both {r['label']} at seed {r['seed']}: keep one")
        seen[key] = path


def seed_values(runs: Sequence[Run], metric: str = "ACC (task mean)") -> dict[str, dict[int, float]]:
    """label -> seed -> `metric`: each row's value on each of its seeds, in the form `analysis.reading` pairs by
    seed, so a notebook reads "holistic against average" from the same runs its table summarizes."""
    read = METRICS[metric]
    return {label: {s: read(r) for s, r in seeds.items()} for label, seeds in by_label(runs).items()}


def stage_on_off(runs: Sequence[Run], metric: str = "ACC (task mean)") -> dict[str, tuple[dict, dict]]:
    """stage -> (seed -> mean of `metric` over the 4 runs with the stage on, seed -> the same with it off), over a
    full 2³ grid per seed. Their paired difference is `stage_effects`' main effect; the two sides apart let
    `analysis.reading` say it as "with the stage − without it" and judge a prediction."""
    mains = {e["other"]: e for e in stage_effects(runs, metric)}  # checks the grid: every seed has all 8
    read = METRICS[metric]
    sides: dict[str, tuple[dict, dict]] = {stage: ({}, {}) for stage in mains}
    for stage in mains:
        for state, side in zip((True, False), sides[stage], strict=True):
            for r in runs:
                if bool(r["stages"][stage]) == state:
                    side[r["seed"]] = side.get(r["seed"], 0.0) + read(r) / 2 ** (len(STAGE_NAMES) - 1)
    return sides
