"""The loss landscape between task models: interpolation paths, barrier heights, weight-disentanglement maps.

Two fine-tuned models θa, θb (both from θ0) are joined by the straight path θ(α) = (1 − α)·θa + α·θb. If the
loss along it rises above the chord between its ends, merging them by averaging lands on a hill: the *barrier*.
Weight disentanglement (Ortiz-Jimenez et al., 2023) asks the same question of task vectors τ_t = θ_t − θ0:

    ξ(α1, α2) = Σ_t E_{x ∈ D_t} [ pred(x; θ0 + α_t·τ_t) ≠ pred(x; θ0 + α1·τ1 + α2·τ2) ]

0 means adding the other task's vector never changes a task's predictions: the two tasks live in separate
directions of weight space. The pure functions take callables; `pair_path` and `disentanglement` bind them to a
prepared run.

Linearity alone does not give that. In f_lin, adding τ2 moves every input's output by exactly J(x)·τ2, task 1's
inputs included; disentanglement needs J(x)·τ2 ≈ 0 on task 1's support (*kernel localisation*, Ortiz-Jimenez et
al.). `jacobian_movement` measures it; `linearity_check` checks the identity on a tangent pair.

A barrier can only come from curvature: the loss is convex in the logits, so where the logits move (nearly)
linearly along the path there is none, however much the two models disagree. A zero barrier says the path never
rises above the chord between its ends; it does not say that averaging is free. So `pair_measurements` also walks a
*control* pair, two fine-tunings of the same task (different mini-batches), where no task can interfere with
another: a cross-task barrier reads against the control's, and the accuracy each task loses at the midpoint
(`midpoint_drop`) shows the interference that a chord-relative barrier does not. ξ is also measured with each
task's two vectors (standard, tangent) rescaled to one length (`common_norm`), so a longer vector cannot be what
makes its ξ larger.

`pair_measurements` returns models and forward functions; `pair_summary` keeps of it only the small, JSON-able part
a notebook draws and asserts on (what `shipped.Results` stores).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, jvp
from tqdm.auto import tqdm

from ..experiment.config import RunConfig
from ..experiment.evaluation import Prepared, test_logits
from ..experiment.training import fine_tune_task
from ..method.linearize import forward_fn
from ..method.merging import Params, interpolate
from . import stats


def barrier_height(
    alphas: Sequence[float], values: Sequence[float], *, higher_is_better: bool = False
) -> float:
    """max over the path of how far `values` fall on the wrong side of the chord between the two ends.

    Losses (lower is better): max_α [L(α) − ((1 − α)·L(0) + α·L(1))] (Frankle et al., 2020). Accuracies: the same
    with the sign flipped. Never negative: the ends themselves sit on the chord."""
    a, v = np.asarray(alphas, dtype=float), np.asarray(values, dtype=float)
    chord = (1 - a) * v[0] + a * v[-1]
    gap = chord - v if higher_is_better else v - chord
    return float(max(0.0, gap.max()))


def task_vector(theta: Mapping[str, Tensor], theta0: Mapping[str, Tensor]) -> Params:
    """τ = θ − θ0: what fine-tuning added to the pre-trained weights."""
    return {k: theta[k] - theta0[k] for k in theta0}


def add_task_vectors(
    theta0: Mapping[str, Tensor], vectors: Sequence[Mapping[str, Tensor]], coefficients: Sequence[float]
) -> Params:
    """θ0 + Σ_t α_t·τ_t."""
    return {k: theta0[k] + sum(c * v[k] for c, v in zip(coefficients, vectors, strict=True)) for k in theta0}


def disentanglement_error(
    predict: Callable[[int, Params], Tensor],
    theta0: Mapping[str, Tensor],
    vectors: Sequence[Mapping[str, Tensor]],
    coefficients: Sequence[float],
) -> float:
    """ξ(α1, …): Σ_t the fraction of task t's examples whose prediction under θ0 + α_t·τ_t changes when every
    task vector is added. `predict(t, params)` returns the predicted labels on task t's data."""
    combined = add_task_vectors(theta0, vectors, coefficients)
    error = 0.0
    for t, (vector, alpha) in enumerate(zip(vectors, coefficients, strict=True)):
        alone = predict(t, add_task_vectors(theta0, [vector], [alpha]))
        error += float((predict(t, combined) != alone).float().mean())
    return error


def disentanglement_map(
    predict: Callable[[int, Params], Tensor],
    theta0: Mapping[str, Tensor],
    theta_1: Mapping[str, Tensor],
    theta_2: Mapping[str, Tensor],
    alphas: Sequence[float],
) -> np.ndarray:
    """ξ over a grid: entry [i, j] is ξ(α1 = alphas[i], α2 = alphas[j]) for the task vectors of θ_1 and θ_2."""
    return vector_map(predict, theta0, [task_vector(theta_1, theta0), task_vector(theta_2, theta0)], alphas)


def vector_map(
    predict: Callable[[int, Params], Tensor],
    theta0: Mapping[str, Tensor],
    vectors: Sequence[Mapping[str, Tensor]],
    alphas: Sequence[float],
) -> np.ndarray:
    """`disentanglement_map` of two task vectors given as such (e.g. rescaled by `common_norm`). The same numbers as
    `disentanglement_error` at each grid point; each task's prediction with its own vector alone depends on its own
    α only, so it is computed once per α rather than once per grid point."""
    alone = [[predict(t, add_task_vectors(theta0, [vectors[t]], [a])) for a in alphas] for t in range(2)]
    grid = np.zeros((len(alphas), len(alphas)))
    for i, a1 in enumerate(alphas):
        for j, a2 in enumerate(alphas):
            combined = add_task_vectors(theta0, vectors, [a1, a2])
            grid[i, j] = sum(
                float((predict(t, combined) != alone[t][k]).float().mean()) for t, k in ((0, i), (1, j))
            )
    return grid


def common_norm(vectors: Sequence[Mapping[str, Tensor]]) -> list[Params]:
    """Each vector rescaled to the mean of their norms (directions kept): the standard and tangent vectors of one
    task made equally long, so that comparing their ξ compares directions, not lengths."""
    norms = [vector_norm(v) for v in vectors]
    target = sum(norms) / len(norms)
    return [{k: t * (target / n if n > 0 else 0.0) for k, t in v.items()} for v, n in zip(vectors, norms, strict=True)]


def value_at(path: Mapping[str, Sequence[float]], key: str, alpha: float) -> float:
    """`path[key]` at `alpha`, linearly interpolated between the path's points (exact where α is one of them)."""
    return float(np.interp(alpha, path["alpha"], path[key]))


def midpoint_drop(path: Mapping[str, Sequence[float]], task: int, end: float | None) -> float:
    """How much accuracy task `task` (0-based) loses at the path's midpoint α = ½ (the plain average of the two
    models) against its own model: the end at α = `end` (0 or 1), or with `end=None` (both ends fine-tuned on that
    task, a control pair) the mean of the two ends. Positive: averaging costs the task accuracy (interference)."""
    key = f"accuracy task {task + 1}"
    own = np.mean([path[key][0], path[key][-1]]) if end is None else value_at(path, key, end)
    return float(own - value_at(path, key, 0.5))


def pair_path(
    prep: Prepared,
    forward: Callable[..., Tensor],
    theta_a: Params,
    theta_b: Params,
    tasks: Sequence[int],
    alphas: Sequence[float],
) -> dict[str, list[float]]:
    """Loss and accuracy along (1 − α)·θa + α·θb, on the joint test set of `tasks` under the head of all their
    classes (task-agnostic, as the continual evaluation), and the loss and accuracy on each task's part of it."""
    path: dict[str, list[float]] = {"alpha": [float(a) for a in alphas], "loss": [], "accuracy": []}
    path.update({f"{kind} task {t + 1}": [] for kind in ("loss", "accuracy") for t in tasks})
    sizes = [len(prep.stream.tasks[t].test_labels) for t in tasks]
    for alpha in alphas:
        logits, labels = test_logits(prep, forward, interpolate(theta_a, theta_b, float(alpha)), tasks)
        correct = (logits.argmax(1) == labels).float()
        path["loss"].append(float(F.cross_entropy(logits, labels)))
        path["accuracy"].append(float(correct.mean()))
        parts = zip(tasks, correct.split(sizes), logits.split(sizes), labels.split(sizes), strict=True)
        for t, right, part, truth in parts:
            path[f"accuracy task {t + 1}"].append(float(right.mean()))
            path[f"loss task {t + 1}"].append(float(F.cross_entropy(part, truth)))
    return path


def task_predictor(prep: Prepared, forward: Callable[..., Tensor], tasks: Sequence[int]) -> Callable:
    """`predict(i, params)`: predictions on the test data of tasks[i] under that task's own head, as in the
    disentanglement definition (each task is judged by its own classifier)."""

    def predict(i: int, params: Params) -> Tensor:
        logits, _ = test_logits(prep, forward, params, [tasks[i]])
        return logits.argmax(1)

    return predict


def straight_path(steps: int) -> list[float]:
    """`steps` evenly spaced α in [0, 1], both ends included."""
    return torch.linspace(0, 1, max(2, steps)).tolist()


def standard_and_tangent_paths(
    prep: Prepared, pair: Sequence[int], alphas: Sequence[float], *, config: RunConfig | None = None
) -> dict[str, dict]:
    """Fine-tune both tasks of `pair` from θ0, standard and tangent, and walk each pair's path (`pair_path`).
    Each entry also holds `forward` (f or f_lin, how its models are evaluated) and `models` (θa, θb)."""
    paths = {}
    for name, tangent in (("standard", False), ("tangent", True)):
        forward = forward_fn(prep.backbone.top, prep.theta0, tangent=tangent)
        a, _ = fine_tune_task(prep, pair[0], tangent=tangent, config=config)
        b, _ = fine_tune_task(prep, pair[1], tangent=tangent, config=config)
        path = pair_path(prep, forward, a.params, b.params, list(pair), alphas)
        paths[name] = {**path, "forward": forward, "models": (a.params, b.params)}
    return paths


def barriers(paths: Mapping[str, Mapping[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Loss and accuracy barrier of each path."""
    return {
        name: {
            "loss barrier": barrier_height(p["alpha"], p["loss"]),
            "accuracy barrier": barrier_height(p["alpha"], p["accuracy"], higher_is_better=True),
        }
        for name, p in paths.items()
    }


@torch.no_grad()
def jacobian_movement(
    module: nn.Module,
    theta0: Mapping[str, Tensor],
    vector: Mapping[str, Tensor],
    inputs: Tensor,
    *,
    batch_size: int = 256,
) -> Tensor:
    """‖J_θ f(x; θ0)·τ‖ for each input x: how far the task vector τ moves f_lin's output at x (exactly, since
    f_lin(x; θ0 + τ1 + τ) − f_lin(x; θ0 + τ1) = J(x)·τ). One forward-mode pass per batch; J is never formed."""
    names = list(vector)
    primal = tuple(theta0[n] for n in names)
    tangent = tuple(vector[n] for n in names)
    norms = []
    for i in range(0, len(inputs), batch_size):
        x = inputs[i : i + batch_size]

        def f(*values: Tensor, x: Tensor = x) -> Tensor:
            return functional_call(module, {**theta0, **dict(zip(names, values, strict=True))}, (x,))

        _, moved = jvp(f, primal, tangent)
        norms.append(moved.flatten(1).norm(dim=1))
    return torch.cat(norms)


def vector_norm(vector: Mapping[str, Tensor]) -> float:
    """‖τ‖ over every tensor of the task vector: how far fine-tuning moved the weights."""
    return float(torch.sqrt(sum((v.double() ** 2).sum() for v in vector.values())))


CONTROL_SEED = 10_000  # the control pair's second fine-tuning: its seed is the run's + this (other mini-batches)


def control_path(
    prep: Prepared, pair: Sequence[int], first: Params, alphas: Sequence[float], *, tangent: bool,
    config: RunConfig | None = None,
) -> dict:
    """The control pair: task pair[0]'s model `first` and a second fine-tuning of the same task on other mini-batches
    (the run's seed + `CONTROL_SEED`), walked as `pair_path` walks the pair (same joint test set, same head). Both
    ends learned the same task, so no task interferes with another along it: whatever barrier the procedure finds
    here is its floor. Also holds `forward` and `models`, as `standard_and_tangent_paths`' entries do."""
    config = (config or prep.config).resolve()
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=tangent)
    other, _ = fine_tune_task(prep, pair[0], tangent=tangent,
                              config=dataclasses.replace(config, seed=config.seed + CONTROL_SEED))  # fmt: skip
    path = pair_path(prep, forward, first, other.params, list(pair), alphas)
    return {**path, "forward": forward, "models": (first, other.params)}


def pair_measurements(
    prep: Prepared,
    pair: Sequence[int],
    alphas: Sequence[float],
    map_alphas: Sequence[float],
    *,
    config: RunConfig | None = None,
    progress: bool = False,
) -> dict:
    """Everything notebook 02 reads off one prepared run (one seed), for standard and tangent task vectors:
    the paths and their barriers (on the joint test set, and on each task's part of it), the control pair's path
    and barriers (`control_path`), how much each task loses at the midpoint against its own model, for the pair
    and for the control (`midpoint_drop`), the ξ map and its mean as fine-tuned and with each task's two vectors
    rescaled to one length (`common_norm`), ‖τ‖ of both ends, each end model's accuracy on its own task (joint
    head), and kernel localisation, E‖J(x)·τb‖ on task a's test inputs against on task b's. The task models are
    fine-tuned with `config`'s settings (the prepared run's by default); `progress` shows a bar."""
    a, b = pair
    # the bar: both pairs fine-tuned and walked, both controls, then each kind's ξ maps
    bar = tqdm(total=4, desc=f"tasks {a + 1} & {b + 1}", disable=not progress, leave=False)
    bar.set_postfix_str("fine-tuning, paths")
    paths = standard_and_tangent_paths(prep, pair, alphas, config=config)
    bar.update()
    bar.set_postfix_str("control pairs")
    controls = {name: control_path(prep, pair, p["models"][0], alphas, tangent=name == "tangent", config=config)
                for name, p in paths.items()}  # fmt: skip
    bar.update()
    heights, control_heights = barriers(paths), barriers(controls)
    vectors = {name: [task_vector(m, prep.theta0) for m in p["models"]] for name, p in paths.items()}
    equal = {name: [] for name in paths}
    for t in range(2):  # each task's standard and tangent vectors, made equally long
        for name, v in zip(paths, common_norm([vectors[name][t] for name in paths]), strict=True):
            equal[name].append(v)
    out: dict = {"paths": paths, "controls": controls, "maps": {}, "numbers": {}}
    for name, p in paths.items():
        bar.set_postfix_str(f"{name}: ξ maps")
        predict = task_predictor(prep, p["forward"], list(pair))
        grid = vector_map(predict, prep.theta0, vectors[name], map_alphas)
        out["maps"][name] = grid
        out["maps"][f"{name}, equal ‖τ‖"] = vector_map(predict, prep.theta0, equal[name], map_alphas)
        tau_a, tau_b = vectors[name]
        on_a, on_b = (
            float(jacobian_movement(prep.backbone.top, prep.theta0, tau_b, prep.test_features[t]).mean())
            for t in (a, b)
        )
        out["numbers"][name] = {
            **heights[name],
            **{f"task {t + 1} loss barrier": barrier_height(p["alpha"], p[f"loss task {t + 1}"]) for t in pair},
            **{f"control {k}": v for k, v in control_heights[name].items()},
            "midpoint drop": (midpoint_drop(p, a, 0.0) + midpoint_drop(p, b, 1.0)) / 2,
            "control midpoint drop": midpoint_drop(controls[name], a, None),
            "mean ξ": float(grid.mean()),
            "mean ξ, equal ‖τ‖": float(out["maps"][f"{name}, equal ‖τ‖"].mean()),
            f"‖τ{a + 1}‖": vector_norm(tau_a),
            f"‖τ{b + 1}‖": vector_norm(tau_b),
            f"task {a + 1} model on task {a + 1}": p[f"accuracy task {a + 1}"][0],
            f"task {b + 1} model on task {b + 1}": p[f"accuracy task {b + 1}"][-1],
            f"E‖J·τ{b + 1}‖ on task {a + 1}": on_a,
            f"E‖J·τ{b + 1}‖ on task {b + 1}": on_b,
            "localisation ratio": on_a / on_b if on_b > 0 else float("nan"),
        }
        bar.update()
    bar.close()
    return out


def linearity_check(
    prep: Prepared, forward: Callable[..., Tensor], theta_a: Params, theta_b: Params, task: int
) -> dict[str, Tensor]:
    """On task `task`'s test inputs x, one value per input: "moved", ‖f(x; θ0 + τa + τb) − f(x; θa)‖ (how far
    adding τb moves the output of θa), and "jacobian", ‖J(x)·τb‖ with J taken at θ0 (`jacobian_movement`). For a
    tangent pair (`forward` is f_lin) the two agree, since f_lin is linear in θ: an identity, on every seed."""
    tau_a, tau_b = task_vector(theta_a, prep.theta0), task_vector(theta_b, prep.theta0)
    x = prep.test_features[task]
    with torch.no_grad():
        both = forward(add_task_vectors(prep.theta0, [tau_a, tau_b], [1, 1]), x)
        moved = (both - forward(theta_a, x)).norm(dim=1)
    jacobian = jacobian_movement(prep.backbone.top, prep.theta0, tau_b, x)
    return {"moved": moved.cpu(), "jacobian": jacobian.cpu()}


def pair_summary(prep: Prepared, pair: Sequence[int], measured: Mapping) -> dict:
    """The small, JSON-able part of `pair_measurements`' output that notebook 02 draws and asserts on: "paths"
    (each path's α, loss and accuracy lists, without its models and forward function), "maps" (the ξ grids),
    "numbers", and "linearity", `linearity_check` of the tangent pair on task pair[0]'s test inputs; "controls",
    the control pairs' paths, stripped as "paths" are."""
    tangent = measured["paths"]["tangent"]

    def lists(paths: Mapping[str, Mapping]) -> dict:
        return {name: {k: v for k, v in p.items() if k not in ("forward", "models")} for name, p in paths.items()}

    return {
        "paths": lists(measured["paths"]),
        "controls": lists(measured["controls"]),
        "maps": dict(measured["maps"]),
        "numbers": dict(measured["numbers"]),
        "linearity": linearity_check(prep, tangent["forward"], *tangent["models"], pair[0]),
    }


def compare_over_seeds(numbers_by_seed: Mapping[int, Mapping[str, Mapping[str, float]]]) -> list[dict]:
    """One row per quantity of `pair_measurements`' numbers: standard and tangent as mean ± 95 % CI over the seeds,
    and the paired per-seed difference tangent − standard with its CI, seeds agreeing and verdict."""
    seeds = sorted(numbers_by_seed)
    quantities = list(numbers_by_seed[seeds[0]]["standard"])
    rows = []
    for q in quantities:
        per = {n: {s: numbers_by_seed[s][n][q] for s in seeds} for n in ("standard", "tangent")}
        effect = stats.paired(per["tangent"], per["standard"])
        rows.append({
            "quantity": q,
            "standard": stats.format_interval(stats.interval(list(per["standard"].values()))),
            "tangent": stats.format_interval(stats.interval(list(per["tangent"].values()))),
            "tangent − standard": stats.format_interval(effect.interval, signed=True),
            "seeds agreeing": f"{effect.agree}/{effect.interval.n}",
            "verdict": effect.verdict.replace("a > b", "tangent higher").replace("a < b", "tangent lower"),
        })  # fmt: skip
    return rows


def per_seed(by_seed: Mapping[int, Mapping], kind: str, quantity: str) -> dict[int, float]:
    """seed -> one number of `pair_measurements`' "numbers" (`by_seed[seed]["numbers"][kind][quantity]`): the form
    `analysis.reading` and `stats.paired` read, so two quantities are compared on the same seeds."""
    return {int(seed): float(m["numbers"][kind][quantity]) for seed, m in sorted(by_seed.items())}
