"""Comparing two per-parameter importance estimates (true / sampled / empirical Fisher, Adam's v), layer by layer.

A merge weighted by importance only cares which coordinates matter *more* than others within a layer (the weights
enter as a ratio), so the comparisons are scale-free: rank correlation, cosine, and the overlap of the top-k
coordinates. A raw-scale gap (v is an EMA of squared *mini-batch mean* gradients, the Fisher a mean of squared
*per-example* gradients) is reported separately as the ratio of means. `task_importances` computes all of them for one task of a run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..experiment.config import RunConfig
from ..experiment.evaluation import Prepared, evaluate
from ..experiment.training import fine_tune_task, task_fisher, task_objective
from ..method.finetune import bias_corrected
from ..method.fisher import KINDS
from ..method.linearize import forward_fn
from ..method.merging import TaskModel, fisher_weighted_merge, interpolate


def ranks(values: Tensor) -> Tensor:
    """1-based ranks of a flat tensor, ties given their average rank (as Spearman's ρ needs: many v and Fisher
    entries are exactly 0, for units no gradient reached)."""
    values = values.flatten().double()
    order = values.argsort()
    sorted_values = values[order]
    _, inverse, counts = torch.unique_consecutive(sorted_values, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # 1-based position of each tie group's last member
    average = last - (counts.double() - 1) / 2
    result = torch.empty_like(values)
    result[order] = average[inverse]
    return result


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman's rank correlation: Pearson's correlation of the (tie-averaged) ranks. NaN if either is constant."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = ra.norm() * rb.norm()
    return float(ra @ rb / denominator) if denominator > 0 else float("nan")


def cosine(a: Tensor, b: Tensor) -> float:
    """Cosine of the angle between the two flattened tensors."""
    a, b = a.flatten().double(), b.flatten().double()
    denominator = a.norm() * b.norm()
    return float(a @ b / denominator) if denominator > 0 else float("nan")


def top_k_overlap(a: Tensor, b: Tensor, fraction: float = 0.01) -> float:
    """|top-k(a) ∩ top-k(b)| / k with k = ⌈fraction · size⌉: do both call the same coordinates most important?
    Chance level is about `fraction`."""
    a, b = a.flatten(), b.flatten()
    k = max(1, int(torch.tensor(fraction * a.numel()).ceil()))
    top_a = torch.zeros(a.numel(), dtype=torch.bool)
    top_a[a.topk(k).indices] = True
    return float(top_a[b.topk(k).indices].sum()) / k


def compare_importances(
    a: Mapping[str, Tensor], b: Mapping[str, Tensor], *, fraction: float = 0.01
) -> list[dict[str, float | str]]:
    """One row per parameter present in both: Spearman ρ, cosine, top-k overlap, and mean(a) / mean(b)."""
    rows = []
    for name in a:
        if name not in b:
            continue
        mean_b = float(b[name].double().mean())
        rows.append({
            "parameter": name,
            "spearman": spearman(a[name], b[name]),
            "cosine": cosine(a[name], b[name]),
            "top-k overlap": top_k_overlap(a[name], b[name], fraction),
            "scale ratio": float(a[name].double().mean()) / mean_b if mean_b > 0 else float("nan"),
        })  # fmt: skip
    return rows


def merge_share(
    prev_weight: Mapping[str, Tensor], new_weight: Mapping[str, Tensor], alpha: float = 0.5
) -> dict[str, Tensor]:
    """Per coordinate, the new model's share in the stage-2 merge: α·w_new / ((1 − α)·w_prev + α·w_new), α where
    both weights are 0 (as `fisher_weighted_merge` falls back). The merge is θ̄ + share·(θ − θ̄), so this, not each
    task's importance alone, is what the weights decide: two estimates that rank coordinates alike within one task
    can still split a coordinate differently between two tasks."""
    shares = {}
    for name in prev_weight:
        if name not in new_weight:
            continue
        w_prev, w_new = (1 - alpha) * prev_weight[name].double(), alpha * new_weight[name].double()
        total = w_prev + w_new
        shares[name] = torch.where(total > 0, w_new / torch.where(total > 0, total, torch.ones_like(total)), alpha)
    return shares


def share_agreement(
    v_prev: Mapping[str, Tensor], v_new: Mapping[str, Tensor], f_prev: Mapping[str, Tensor],
    f_new: Mapping[str, Tensor], alpha: float = 0.5,
) -> float:  # fmt: skip
    """Mean over layers of Spearman's ρ between the merge's share computed with v and with the Fisher: 1 when v
    would split every coordinate between the two tasks in the Fisher's order. Within-task ρ (`compare_importances`)
    can be high while this is low: a factor both tasks share (a large input activation) cancels in the share."""
    with_v, with_f = merge_share(v_prev, v_new, alpha), merge_share(f_prev, f_new, alpha)
    values = [spearman(with_v[n], with_f[n]) for n in with_v if n in with_f]
    return sum(values) / len(values)


def task_importances(
    prep: Prepared,
    t: int,
    *,
    tangent: bool = True,
    config: RunConfig | None = None,
    kinds: Sequence[str] = KINDS,
    examples: int | None = None,
    model: TaskModel | None = None,
) -> tuple[TaskModel, dict[str, dict[str, Tensor]]]:
    """Fine-tune task t alone (with `config`'s β2, batch size, schedule), then, at the fine-tuned θ and on the same
    training data (the first `examples` of it), the diagonal Fisher of each kind and Adam's v, raw and
    bias-corrected: {"true": …, "sampled": …, "empirical": …, "v raw": …, "v corrected": …}. `model`: task t
    already fine-tuned that way (`fine_tune_task` with the same settings), so a caller that has it does not train
    it twice."""
    if model is None:
        model, _ = fine_tune_task(prep, t, tangent=tangent, config=config)
    _, inputs, labels = task_objective(prep, t, tangent=tangent)
    inputs, labels = inputs[:examples], labels[:examples]
    trained = {k: v for k, v in model.params.items() if k in model.second_moment}
    importances = {
        kind: task_fisher(prep, t, trained, inputs, labels, kind, tangent=tangent) for kind in kinds
    }
    importances["v raw"] = dict(model.second_moment)
    importances["v corrected"] = bias_corrected(model.second_moment, model.beta2, model.steps)
    return model, importances


def setting_measurements(
    prep: Prepared,
    config: RunConfig,
    *,
    tasks: tuple[int, int] = (0, 1),
    examples: int | None = None,
    fraction: float = 0.01,
    alpha: float = 0.5,
) -> dict[str, float]:
    """One optimizer setting (β2, batch size, schedule in `config`), one seed: fine-tune both tasks in the tangent
    space, then how well task a's bias-corrected v ranks coordinates like its true Fisher (mean Spearman ρ and
    top-k overlap over layers), how well the merge's share of task b computed with raw v ranks like the share
    computed with the true Fisher (`share_agreement`), the mean scale of v and of the true Fisher, and the joint
    accuracy of the two task models merged by the stage-2 rule with raw v, with bias-corrected v and with the true
    Fisher, against plain averaging (the merge the setting feeds)."""
    a, b = tasks
    model_a, found_a = task_importances(prep, a, config=config, kinds=("true",), examples=examples)
    model_b, found_b = task_importances(prep, b, config=config, kinds=("true",), examples=examples)
    rows = compare_importances(found_a["v corrected"], found_a["true"], fraction=fraction)

    def scale(importance: Mapping[str, Tensor]) -> float:
        return float(torch.stack([v.double().mean() for v in importance.values()]).mean())

    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=True)
    merged, _ = fisher_weighted_merge(
        model_a.params, model_b.params, found_a["v raw"], found_b["v raw"], alpha
    )
    corrected, _ = fisher_weighted_merge(
        model_a.params, model_b.params, found_a["v corrected"], found_b["v corrected"], alpha
    )
    by_fisher, _ = fisher_weighted_merge(model_a.params, model_b.params, found_a["true"], found_b["true"], alpha)
    averaged = interpolate(model_a.params, model_b.params, alpha)
    upto = max(tasks)
    return {
        "mean ρ (v vs true)": sum(r["spearman"] for r in rows) / len(rows),
        "mean top-k overlap": sum(r["top-k overlap"] for r in rows) / len(rows),
        "share ρ (v vs true)": share_agreement(found_a["v raw"], found_b["v raw"], found_a["true"], found_b["true"],
                                               alpha),
        "v corrected scale": scale(found_a["v corrected"]),
        "true Fisher scale": scale(found_a["true"]),
        "v-weighted merge acc": evaluate(prep, forward, merged, upto)[1],
        "v-corrected merge acc": evaluate(prep, forward, corrected, upto)[1],
        "true-Fisher merge acc": evaluate(prep, forward, by_fisher, upto)[1],
        "average merge acc": evaluate(prep, forward, averaged, upto)[1],
        "examples seen": float(model_a.steps * config.resolve().batch_size),
    }
