"""When does each stage help? The regime map: each stage's paired effect along the dials that should move it, and
the mechanism that should explain it, measured on the same seeds (notebook 09, benchmarks/regime_map.py).

A stage's effect at one grid point is the holistic method with the stage on minus with it off, per seed (the
ablation rows of `compare --methods holistic`); alignment is also measured after a plain interpolation merge
(`-during` minus `-during-post`), where the merge moves the features further. Along each dial the literature
predicts where a stage should start to pay:

- tangent fine-tuning (pre) needs a network that fine-tuning makes non-linear: more trainable depth, a larger
  learning rate or more steps move θ further from θ0 (Ortiz-Jimenez et al., 2023); it costs single-task accuracy
  (Jin et al., 2025). Mechanism: the standard model's linearity gap along its task vector, the disentanglement
  error ξ of two task vectors (standard and tangent), the plasticity lost (standard − tangent individual accuracy)
  and plain task arithmetic from θ0 with tangent against standard task vectors.
- v-weighting (during) needs v to split coordinates between tasks the way the Fisher would: mechanism, Spearman's
  ρ between the merge's share computed with v and with the true Fisher (`fisher_compare.share_agreement`).
- alignment (post) needs a merge that moves the features (Yang et al., 2024): mechanism, the merged model's
  feature discrepancy to the teacher on old tasks' data, and the fraction alignment removes.

Each point's effects form one family per stream and stage: Holm's adjustment over the points of that family (a
search for "a setting where it helps" is as many tests as points), and the Bonferroni interval at the family's
level, so "an adjusted interval excluding 0" means what it says.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from ..experiment.config import RunConfig
from ..experiment.evaluation import Prepared, test_logits
from ..experiment.pipeline import prepare
from ..experiment.training import fine_tune_task
from ..method.linearize import forward_fn
from . import stats
from .fisher_compare import share_agreement, task_importances
from .landscape import add_task_vectors, disentanglement_error, task_predictor, task_vector
from .ntk import linearity_gap
from .probes import alignment_trace

CIL, DIL = "split-mnist-fashion-animal", "rotated-mnist"
# The notebooks' sizes (00, 04-06): 500 training and 300 test images a task, 100 steps at the headroom lr 3e-4
BASE = {"train_per_task": 500, "test_per_task": 300, "steps": 100, "lr": 3e-4}
# row name -> the holistic method's stage switches
METHODS: dict[str, dict[str, bool]] = {
    "holistic": {}, "-pre": {"pre": False}, "-during": {"during": False}, "-post": {"post": False},
    "-during-post": {"during": False, "post": False},
}  # fmt: skip
# effect -> (row with the stage, row without it)
EFFECTS: dict[str, tuple[str, str]] = {
    "pre": ("holistic", "-pre"), "during": ("holistic", "-during"), "post": ("holistic", "-post"),
    "post after a plain merge": ("-during", "-during-post"),
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Point:
    """One grid point: a stream, the dial it moves ("base" for the notebooks' settings) and that dial's value."""

    stream: str
    dial: str
    value: str
    overrides: tuple[tuple[str, object], ...] = ()
    measured: bool = True  # its mechanisms measured too (`mechanisms`)

    @property
    def name(self) -> str:
        return f"{'CIL' if self.stream == CIL else 'DIL'}: {self.dial} {self.value}"

    def config(self, seed: int, base: Mapping[str, object] = BASE) -> RunConfig:
        """The holistic method at this point on `seed`: the base sizes with this point's dial turned."""
        return RunConfig(stream=self.stream, method="holistic", seed=seed, **{**base, **dict(self.overrides)})


def _p(stream: str, dial: str, value: str, measured: bool = True, **overrides: object) -> Point:
    return Point(stream, dial, value, tuple(overrides.items()), measured)


GRID: tuple[Point, ...] = (
    _p(CIL, "base", "(notebooks' settings)"),
    _p(CIL, "learning rate", "1e-4", lr=1e-4), _p(CIL, "learning rate", "1e-3", lr=1e-3),
    _p(CIL, "learning rate", "3e-3", lr=3e-3),
    _p(CIL, "steps", "300", steps=300),
    # three trained blocks: each run ~20x the cost of the others on 2 cores, its mechanisms (two traced runs, the
    # Fisher) ~15 min a seed: its effects are measured, its mechanisms are not
    _p(CIL, "trainable from block", "13", measured=False, trainable_from=13),
    _p(CIL, "alpha", "0.3", alpha=0.3), _p(CIL, "alpha", "0.8", alpha=0.8),
    _p(CIL, "beta2", "0.99", beta2=0.99),
    _p(CIL, "tasks", "3", tasks=3),
    _p(CIL, "alignment", "teacher: current", align_teacher="current"),
    _p(CIL, "alignment", "parameter: projection", align_parameter="projection"),
    _p(CIL, "alignment", "strong (100 steps, lr 1e-2)", align_steps=100, align_lr=1e-2),
    _p(DIL, "base", "(notebooks' settings)"),
    _p(DIL, "learning rate", "1e-3", lr=1e-3), _p(DIL, "learning rate", "3e-3", lr=3e-3),
    _p(DIL, "alpha", "0.8", alpha=0.8),
    _p(DIL, "alignment", "strong (100 steps, lr 1e-2)", align_steps=100, align_lr=1e-2),
)  # fmt: skip
# A verdict of stats.verdict_word in a stage's words
VERDICT_WORDS = {"a > b": "helps", "a < b": "hurts"}
# What `mechanisms` measures, and which mechanism should track which stage's effect (effect, mechanism)
MECHANISMS = (
    "linearity gap", "weight distance", "plasticity lost (points)", "ξ standard", "ξ tangent",
    "task arithmetic, tangent − standard (points)", "share ρ (v vs true)",
    *(f"{k}{merge}" for merge in ("", ", plain merge") for k in (
        "drift", "drift removed", "drift (new task)", "drift removed (new task)", "alignment gain (points)")),
)  # fmt: skip
TRACKS = (("pre", "linearity gap"), ("post after a plain merge", "drift, plain merge"), ("post", "drift"),
          ("during", "share ρ (v vs true)"), ("during", "drift, plain merge"))  # fmt: skip
# A grid the test suite runs through the same command: two points, tiny sizes
SMOKE_BASE = {"train_per_task": 48, "test_per_task": 24, "steps": 3, "lr": 3e-4, "tasks": 2, "align_steps": 2}
SMOKE_GRID: tuple[Point, ...] = (_p(CIL, "base", "(smoke)"), _p(CIL, "learning rate", "1e-3", lr=1e-3))


def by_seed(rows: Sequence[Mapping], point: str, method: str, key: str = "acc") -> dict[int, float]:
    """seed -> `key` of the rows of `method` at grid point `point`."""
    return {int(r["seed"]): float(r[key]) for r in rows if r["candidate"] == point and r["method"] == method}


def effects(rows: Sequence[Mapping], grid: Sequence[Point]) -> list[dict]:
    """Every (point, effect) with runs on both sides: the paired effect on final ACC, per seed, with Holm's
    verdicts and the Bonferroni interval over the points of its family (one stream, one effect)."""
    found = []
    for point in grid:
        for effect, (on, off) in EFFECTS.items():
            a, b = by_seed(rows, point.name, on), by_seed(rows, point.name, off)
            if set(a) & set(b):
                found.append((point, effect, stats.paired(a, b)))
    out = []
    for stream in dict.fromkeys(p.stream for p, _, _ in found):
        for effect in EFFECTS:
            family = [(p, e) for p, name, e in found if p.stream == stream and name == effect]
            judged = stats.verdicts([e for _, e in family])
            level = 1 - (1 - stats.CONFIDENCE) / max(len(family), 1)
            for (point, e), verdict in zip(family, judged, strict=True):
                out.append({
                    "point": point.name, "stream": stream, "dial": point.dial, "value": point.value,
                    "effect": effect, "seeds": list(e.seeds), "differences": list(e.differences),
                    "mean": e.interval.mean, "half_width": e.interval.half_width,
                    "adjusted_half_width": stats.interval(e.differences, level).half_width if e.interval.n > 1
                    else float("nan"),
                    "family_size": len(family), "p": verdict.p, "p_holm": verdict.p_holm,
                    "verdict": verdict.raw, "verdict_holm": verdict.adjusted,
                })  # fmt: skip
    return out


def _accuracy(prep: Prepared, forward, params, tasks: Sequence[int]) -> float:
    logits, labels = test_logits(prep, forward, params, tasks)
    return float((logits.argmax(1) == labels).float().mean())


def _drift(steps) -> dict[str, float]:
    """Over one trace's merges: the merged model's feature discrepancy (MSE) to the teacher on old tasks' data and
    on the new task's, the fraction of each that alignment removed, and the accuracy alignment added (points)."""
    n = len(steps)
    out = {"alignment gain (points)": 100 * sum(s.accuracy["aligned"] - s.accuracy["merged"] for s in steps) / n}
    for data, suffix in (("old", ""), ("new", " (new task)")):
        out[f"drift{suffix}"] = sum(s.discrepancy[data]["merged"]["mse"] for s in steps) / n
        out[f"drift removed{suffix}"] = sum(s.reduction(data, "mse") for s in steps) / n
    return out


def mechanisms(config: RunConfig) -> dict[str, float]:
    """The mechanisms at one grid point and seed (`config`: the holistic method there).

    pre: each task fine-tuned from θ0 both ways; the standard models' relative linearity gap and weight distance
    (mean over tasks), the plasticity lost (standard − tangent individual accuracy, points), ξ(1, 1) of the first
    two tasks' vectors each way, and plain task arithmetic θ0 + λ·Σ τ_t (λ = `config.scale`) evaluated
    task-agnostically, tangent − standard (points). during: `share ρ (v vs true)` of the first two tasks' tangent
    models (the ones above, as `fisher_compare.setting_measurements` would train them), at the point's α. post:
    `_drift` of the holistic method and of its plain-interpolation variant."""
    prep = prepare(config, progress=False)
    tasks = range(len(prep.stream.tasks))
    forward = {False: forward_fn(prep.backbone.top, prep.theta0, tangent=False),
               True: forward_fn(prep.backbone.top, prep.theta0, tangent=True)}  # fmt: skip
    trained = {way: [fine_tune_task(prep, t, tangent=way, config=config)[0] for t in tasks] for way in forward}
    models = {way: [m.params for m in trained[way]] for way in forward}
    gaps = [linearity_gap(forward[False], forward[True], prep.theta0, m, prep.test_features[t])
            for t, m in zip(tasks, models[False], strict=True)]  # fmt: skip
    out = {
        "linearity gap": sum(g["relative_gap"] for g in gaps) / len(gaps),
        "weight distance": sum(g["weight_distance"] for g in gaps) / len(gaps),
        "plasticity lost (points)": 100 * sum(
            _accuracy(prep, forward[False], models[False][t], [t]) - _accuracy(prep, forward[True], models[True][t], [t])
            for t in tasks) / len(tasks),
    }  # fmt: skip
    task_arithmetic = {}
    for way, name in ((False, "standard"), (True, "tangent")):
        vectors = [task_vector(m, prep.theta0) for m in models[way]]
        out[f"ξ {name}"] = disentanglement_error(task_predictor(prep, forward[way], [0, 1]), prep.theta0,
                                                 vectors[:2], [1.0, 1.0])  # fmt: skip
        merged = add_task_vectors(prep.theta0, vectors, [config.resolve().scale] * len(vectors))
        task_arithmetic[way] = _accuracy(prep, forward[way], merged, list(tasks))
    out["task arithmetic, tangent − standard (points)"] = 100 * (task_arithmetic[True] - task_arithmetic[False])
    found = [task_importances(prep, t, config=config, kinds=("true",), model=trained[True][t])[1] for t in (0, 1)]
    out["share ρ (v vs true)"] = share_agreement(found[0]["v raw"], found[1]["v raw"], found[0]["true"],
                                                 found[1]["true"], config.resolve().alpha)  # fmt: skip
    for name, during in (("", True), (", plain merge", False)):
        steps = alignment_trace(dataclasses.replace(config, during=during), prep)
        out.update({f"{k}{name}": v for k, v in _drift(steps).items()})
    for key, value in out.items():
        if not math.isfinite(value):
            raise ArithmeticError(f"the mechanism {key!r} is not finite ({value}) at {config}")
    return out


def point_means(rows: Sequence[Mapping], key: str) -> dict[str, float]:
    """grid point -> the mean of `key` over that point's seeds (mechanism rows)."""
    values: dict[str, list[float]] = {}
    for r in rows:
        values.setdefault(r["candidate"], []).append(float(r[key]))
    return {point: sum(v) / len(v) for point, v in values.items()}


def pairs(effect_rows: Sequence[Mapping], mechanism_rows: Sequence[Mapping], effect: str, key: str,
          stream: str | None = None) -> tuple[list[float], list[float]]:  # fmt: skip
    """(each point's mean mechanism `key`, its mean `effect`) over the points of `stream` (or all) that have both:
    what `reading.association` reads to say whether the mechanism tracks the effect across the grid."""
    mechanism = point_means(mechanism_rows, key)
    found = [(mechanism[e["point"]], e["mean"]) for e in effect_rows
             if e["effect"] == effect and e["point"] in mechanism and stream in (None, e["stream"])]  # fmt: skip
    return [m for m, _ in found], [e for _, e in found]


def best(effect_rows: Sequence[Mapping], effect: str) -> dict:
    """The point where `effect` is largest among those whose Holm verdict says it helps, else the largest mean."""
    rows = [e for e in effect_rows if e["effect"] == effect]
    helping = [e for e in rows if e["verdict_holm"] == "a > b"]
    return max(helping or rows, key=lambda e: e["mean"])
