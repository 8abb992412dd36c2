"""Measurements inside a continual run: the α curve of one merge, and the features around every alignment.

Both replay `pipeline.run` with an observer (`steps.Merge`), so they measure exactly the models a run
produces, without a second copy of the loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from ..experiment.config import RunConfig
from ..experiment.evaluation import Prepared, evaluate, features
from ..experiment.pipeline import RunResult, prepare, run
from ..experiment.steps import Merge
from ..method.align import LOSSES, feature_discrepancy
from ..method.merging import merge_interpolate, merge_v_weighted
from . import stats
from .tsne import joint_tsne

CURVE_RULES = {"v-weighted": merge_v_weighted, "interpolate": merge_interpolate}


@dataclass
class AlphaCurve:
    """Accuracy of the merge of tasks 1 and 2 at each α (the new task's weight), per merge rule."""

    alphas: list[float]
    task_accuracy: dict[str, list[list[float]]]  # rule -> per α: [accuracy on task 1, on task 2]
    joint_accuracy: dict[str, list[float]]  # rule -> per α: accuracy on both tasks' test sets


def alpha_curve(config: RunConfig, alphas: list[float], *, progress: bool = False) -> AlphaCurve:
    """Fine-tune tasks 1 and 2 as `run` does (stage 1 as configured), then merge them at every α with the
    v-weighted rule and with plain interpolation. Alignment is left out: the curve is about the merge alone."""
    if any(not 0.0 <= a <= 1.0 for a in alphas):
        raise UserError(f"every α must lie in [0, 1], got {alphas}")
    config = dataclasses.replace(config, method="holistic", tasks=2, during=True, post=False)
    prep = prepare(config, progress=progress)
    seen: list[Merge] = []
    run(config, prep, progress=progress, observe=seen.append)
    merge = seen[1]
    tasks: dict[str, list[list[float]]] = {name: [] for name in CURVE_RULES}
    joint: dict[str, list[float]] = {name: [] for name in CURVE_RULES}
    for alpha in alphas:
        settings = dataclasses.replace(merge.settings, alpha=alpha)
        for name, rule in CURVE_RULES.items():
            merged = rule(merge.carried, merge.task_model, settings)["merged"]
            per_task, both = evaluate(prep, merge.forward, merged, 1)
            tasks[name].append(per_task)
            joint[name].append(both)
    return AlphaCurve(list(alphas), tasks, joint)


MODELS = ("previous", "merged", "aligned")  # θ̄(t−1); θ̄(t) straight from the merge; θ̄(t) after alignment


@dataclass
class AlignmentStep:
    """The models around the merge of task t, measured on old tasks' and task t's test data."""

    task: int  # 0-based
    discrepancy: dict[
        str, dict[str, dict[str, float]]
    ]  # data -> "merged"/"aligned" -> loss -> vs the teacher
    accuracy: dict[str, float]  # "merged"/"aligned" -> accuracy on the union of seen tasks' test sets
    features: dict[str, dict[str, Tensor]] = field(
        default_factory=dict
    )  # data -> model -> features (kept only)
    labels: dict[str, Tensor] = field(default_factory=dict)  # data -> class ids (kept only)

    def reduction(self, data: str, loss: str) -> float:
        """The fraction of the merge's discrepancy that alignment removed (negative: alignment added some)."""
        d = self.discrepancy[data]
        return 1.0 - d["aligned"][loss] / d["merged"][loss] if d["merged"][loss] > 0 else 0.0


def _old_indices(n: int, limit: int) -> Tensor:
    """At most `limit` evenly spaced indices of n (a fixed, seed-free subsample of the old tasks' data)."""
    return torch.arange(n) if n <= limit else torch.linspace(0, n - 1, limit).round().long()


def alignment_trace(
    config: RunConfig,
    prepared: Prepared | None = None,
    *,
    keep: tuple[int, ...] = (),
    old_limit: int = 1000,
    progress: bool = False,
) -> list[AlignmentStep]:
    """Run the holistic method and, at every merge from task 2 on, measure how far the merged model's features
    are from the alignment teacher's before and after alignment (every loss of align.LOSSES), on old tasks' test
    data (at most `old_limit` images) and on the new task's; and the accuracy on all seen tasks before and after.
    Features and labels are kept for the tasks in `keep` (for a picture); the rest keeps only the numbers."""
    config = dataclasses.replace(config, method="holistic")
    prep = prepared if prepared is not None else prepare(config, progress=progress)
    stream = prep.stream.tasks
    steps: list[AlignmentStep] = []

    def observe(merge: Merge) -> None:
        t = merge.task
        if t == 0:
            return
        old = _old_indices(sum(len(s.test_labels) for s in stream[:t]), old_limit)
        data = {
            "old": (
                torch.cat(prep.test_features[:t])[old],
                torch.cat([s.test_labels for s in stream[:t]])[old],
            ),
            "new": (prep.test_features[t], stream[t].test_labels),
        }
        models = {"previous": merge.carried["merged"], "merged": merge.merged, "aligned": merge.aligned}
        step = AlignmentStep(t, {}, {m: evaluate(prep, merge.forward, models[m], t)[1] for m in MODELS[1:]})
        for name, (inputs, labels) in data.items():
            out = {m: features(merge.forward, p, inputs) for m, p in models.items()}
            target = features(merge.forward, merge.teacher, inputs)
            step.discrepancy[name] = {
                m: {loss: feature_discrepancy(out[m], target, loss) for loss in LOSSES} for m in MODELS[1:]
            }
            if t in keep:
                step.features[name], step.labels[name] = out, labels
        steps.append(step)

    run(config, prep, progress=progress, observe=observe)
    return steps


def step_embedding(
    step: AlignmentStep, classes: list[int] | None = None, *, perplexity: float = 30.0, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One joint t-SNE of every kept feature set of `step` (previous / merged / aligned on old / new data),
    restricted to `classes` (None: all). Returns ("model/data" -> 2-D points, "model/data" -> class ids)."""
    if not step.features:
        raise UserError(f"task {step.task + 1}'s features were not kept: pass keep=({step.task},)")
    sets, labels = {}, {}
    for data, by_model in step.features.items():
        chosen = torch.ones(len(step.labels[data]), dtype=torch.bool)
        if classes is not None:
            chosen = torch.isin(step.labels[data], torch.tensor(list(classes), dtype=step.labels[data].dtype))
        for model, values in by_model.items():
            if chosen.any():
                sets[f"{model}/{data}"] = values[chosen]
                labels[f"{model}/{data}"] = step.labels[data][chosen].numpy()
    if not sets:
        raise UserError(f"none of the classes {classes} occur in task {step.task + 1}'s old or new data")
    return joint_tsne(sets, perplexity=perplexity, seed=seed), labels


def discrepancy_trend(
    steps: list[AlignmentStep], data: str = "old", model: str = "merged", loss: str = "mse"
) -> tuple[float, float, float]:
    """Does the discrepancy grow along the stream? (least-squares slope per task, first value, last value)."""
    if len(steps) < 2:
        raise UserError("a trend needs at least two merges (three tasks)")
    values = np.array([s.discrepancy[data][model][loss] for s in steps])
    slope = np.polyfit([s.task for s in steps], values, 1)[0]
    return float(slope), float(values[0]), float(values[-1])


@dataclass
class DriftTrace:
    """Drift against a fixed reference: drift[t][j] = discrepancy between the model served after task t and the
    model served right after task j, both on task j's test images (NaN for j > t; 0 on the diagonal)."""

    loss: str
    drift: np.ndarray  # [T, T]
    acc_matrix: np.ndarray  # R[t][j] of the same run
    post: bool  # whether alignment was on

    def at_lag(self) -> np.ndarray:
        """Mean over j of drift[j + k][j], for k = 0 … T − 1: how far a task's features have moved k tasks after
        it was learnt. Growing with k is accumulation; flat is a bounded error."""
        return lag_means(self.drift)

    def accuracy_at_lag(self) -> np.ndarray:
        """The same mean over the accuracy matrix, R[j + k][j]: what the drift costs a task k tasks later."""
        return lag_means(self.acc_matrix)

    def mean_drift(self) -> float:
        """The mean of drift[t][j] over every pair t > j: one number per run, to compare settings over seeds."""
        n = len(self.drift)
        if n < 2:
            raise UserError("drift needs at least two tasks (one later task to move the first)")
        return float(np.mean(self.drift[np.tril_indices(n, -1)]))

    def slope(self) -> float:
        """Least-squares slope of drift[t][j] against the lag t − j over every pair t > j (each pair one point, so a
        large lag, which only the first tasks reach, does not weigh more than a small one). Above 0: the drift grows
        with the lag, i.e. it accumulates."""
        n = len(self.drift)
        if n < 3:
            raise UserError("a slope over lags needs at least three tasks (lags 1 and 2)")
        later, earlier = np.tril_indices(n, -1)
        return float(np.polyfit(later - earlier, self.drift[later, earlier], 1)[0])


def lag_means(matrix: np.ndarray) -> np.ndarray:
    """Mean over j of matrix[j + k][j], for k = 0 … T − 1 (the k-th sub-diagonal of a lower-triangular [T, T]
    matrix such as the drift or the accuracy matrix R): a task's value k tasks after it was learnt."""
    matrix = np.asarray(matrix, dtype=float)
    n = len(matrix)
    return np.array([float(np.mean(np.diagonal(matrix, -k))) for k in range(n)])


def lag_rows(
    traces: Mapping[str, Mapping[int, DriftTrace]], lags: Sequence[int], *, digits: int = 3
) -> list[dict]:
    """A table over seeds, one row per lag k: per setting, the drift at lag k and the accuracy R[j + k][j] at lag k
    (each the mean over tasks), as mean ± 95 % interval over the seeds. `traces`: setting -> seed -> trace."""
    rows = []
    for k in lags:
        row: dict = {"lag k": k}
        for name, by_seed in traces.items():
            drift = [t.at_lag()[k] for t in by_seed.values()]
            row[f"drift: {name}"] = stats.format_interval(stats.interval(drift), digits=digits)
        for name, by_seed in traces.items():
            accuracy = [t.accuracy_at_lag()[k] for t in by_seed.values()]
            row[f"R[j+k][j]: {name}"] = stats.format_interval(stats.interval(accuracy), digits=digits)
        rows.append(row)
    return rows


def by_seed(runs: Sequence[RunResult], value: Callable[[RunResult], float], **match: Any) -> dict[int, float]:
    """seed -> `value(run)` over the runs whose config has every `match` item (e.g. stream="permuted-mnist",
    pre=True); a later run of a seed replaces an earlier one. What `reading.difference` pairs, from a panel's runs."""
    found: dict[int, float] = {}
    for run_result in runs:
        if all(run_result.config.get(k) == v for k, v in match.items()):
            found[run_result.seed] = float(value(run_result))
    return found


def plasticity(run_result: RunResult) -> float:
    """The mean of the accuracy matrix's diagonal, R[t][t]: how well each task is learnt right after it arrives."""
    return float(np.mean(np.diagonal(run_result.acc_matrix)))


def feature_drift(
    config: RunConfig, prepared: Prepared | None = None, *, loss: str = "mse", progress: bool = False
) -> DriftTrace:
    """Run the method (stages as configured) and, after every task t, compare the served model's features on each
    earlier task j's test images with the features the model served right after task j had on them: a fixed
    reference per task, unlike the one-step discrepancy to the previous model that `alignment_trace` measures."""
    if loss not in LOSSES:
        raise UserError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
    prep = prepared if prepared is not None else prepare(config, progress=progress)
    n = len(prep.stream.tasks)
    drift = np.full((n, n), np.nan)
    reference: list[Tensor] = []

    def observe(merge: Merge) -> None:
        t = merge.task
        reference.append(features(merge.forward, merge.aligned, prep.test_features[t]))
        drift[t][t] = 0.0  # the reference itself
        for j in range(t):
            now = features(merge.forward, merge.aligned, prep.test_features[j])
            drift[t][j] = feature_discrepancy(now, reference[j], loss)

    result = run(config, prep, progress=progress, observe=observe)
    return DriftTrace(loss, drift, result.acc_matrix, config.resolve().post)


def ema_shares(alphas: list[float]) -> np.ndarray:
    """Each task's share of θ̄ after the last task, when every merge is θ̄(t) = (1 − α_t)·θ̄(t−1) + α_t·θ(t) (plain
    interpolation; the v-weighted rule reshapes these shares per coordinate). The first task is kept whole
    (α_1 = 1 in effect). Task j's share is α_j·Π_{i>j}(1 − α_i): a fixed α gives α(1 − α)^(T−j) for j ≥ 2 and
    (1 − α)^(T−1) for task 1, an exponential moving average over tasks; α_t = 1/t gives 1/T each, the plain
    average."""
    shares = np.zeros(len(alphas))
    for t, alpha in enumerate(alphas):
        shares *= 1 - (alpha if t else 1.0)
        shares[t] = alpha if t else 1.0
    return shares
