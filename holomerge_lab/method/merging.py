"""Stage 2: merge rules as pure functions on parameter dicts, and the state each carries between tasks.

A continual merge rule has one signature:

    rule(carried, task, settings) -> carried

`carried` is everything the rule keeps from one task to the next (a dict of parameter dicts; "merged" is the model
served after the task), `task` is what fine-tuning on the new task produced. The pre-trained θ0 is kept by every
method and lives in `settings`. A new rule is one small function added to `MERGE_RULES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError
from .finetune import bias_corrected

Params = dict[str, Tensor]
Carried = dict[str, Params]


@dataclass(frozen=True)
class TaskModel:
    """One task's fine-tuning output, as a merge rule sees it."""

    params: Params  # θ(t)
    second_moment: Params  # Adam's v(t), raw
    steps: int
    beta2: float
    fisher: Params | None = None  # diagonal Fisher at θ(t), computed only for rules in NEEDS_FISHER


@dataclass(frozen=True)
class MergeSettings:
    """A merge's settings. These defaults are the package's, stated once: RunConfig reads them from here."""

    theta0: Params
    task_index: int  # t, counting from 1
    alpha: float = 0.5  # weight of the new task (the `paper` preset sets the authors' 0.4)
    scale: float = 0.3  # λ of task arithmetic
    eps: float = 0.0  # added to both merge weights ("clean" variant); 0 = the authors' rule
    bias_correct: bool = False  # divide v by (1 − β2^k) ("clean" variant)
    top_k: float = 0.2  # TIES: fraction of each task vector's entries kept (the paper's k = 20 %)
    ties_scale: float | None = None  # TIES: λ; None = the rule's own (TIES_SCALES)
    magmax_scale: float = 0.5  # MagMax: λ on the max-magnitude task vector (the authors' released code)
    opcm_alpha: float = 0.5  # OPCM: singular-value mass that defines the kept subspace (FusionBench default)
    fisher_floor: float = 1e-6  # Fisher merging: added to every weight (FusionBench's minimal_fisher_weight)


def check_same_layout(what: str, a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> None:
    """Two parameter dicts that are merged hold the same names with the same shapes: torch would broadcast a [1]
    tensor against a [3] one and return a number that looks right."""
    if set(a) != set(b):
        raise UserError(f"{what}: the two models hold different parameters ({sorted(set(a) ^ set(b))[:3]}): "
                        "merge models of one backbone")  # fmt: skip
    for k in a:
        if a[k].shape != b[k].shape:
            raise UserError(f"{what}: {k!r} has shape {tuple(a[k].shape)} in one and {tuple(b[k].shape)} in the "
                            "other: merge models of one backbone")  # fmt: skip


def interpolate(prev: Mapping[str, Tensor], new: Mapping[str, Tensor], alpha: float) -> Params:
    """(1 − α)·prev + α·new, key by key (α outside [0, 1] extrapolates along the line, as a landscape may)."""
    if not math.isfinite(alpha):
        raise UserError(f"interpolate: alpha must be a finite number, got {alpha}")
    check_same_layout("interpolate", prev, new)
    return {k: torch.lerp(prev[k], new[k], alpha) for k in prev}


def fisher_weighted_merge(
    prev: Mapping[str, Tensor],
    new: Mapping[str, Tensor],
    prev_weight: Mapping[str, Tensor],
    new_weight: Mapping[str, Tensor],
    alpha: float,
    eps: float = 0.0,
) -> tuple[Params, Params]:
    """The stage-2 rule of the paper, element-wise:

        F̄(t) = (1 − α)·F̄(t−1) + α·v(t)
        θ̄(t) = [(1 − α)·(F̄(t−1)+ε)·θ̄(t−1) + α·(v(t)+ε)·θ(t)] / [(1 − α)·(F̄(t−1)+ε) + α·(v(t)+ε)]

    With ε = 0 this is exactly the authors' code. Keys without weights fall back to (1 − α, α) interpolation, and so
    do single coordinates whose weights are both zero (a unit no task's gradient ever reached, e.g. a dead ReLU6
    channel): the authors' code turns them into 0/0 = NaN. Returns (θ̄(t), F̄(t)); F̄(t) never includes ε.
    Negative or NaN weights are refused: they are not second moments.
    """
    if not 0.0 <= alpha <= 1.0 or not math.isfinite(eps) or eps < 0:
        raise UserError(f"fisher_weighted_merge: alpha must be in [0, 1] and eps finite and >= 0, got {alpha}, {eps}")
    check_same_layout("fisher_weighted_merge", prev, new)
    for k in set(prev_weight) & set(new_weight):
        if not prev_weight[k].shape == new_weight[k].shape == prev[k].shape:
            raise UserError(f"fisher_weighted_merge: the weights of {k!r} do not have its shape {tuple(prev[k].shape)}")
    merged, carried_weight = {}, {}
    for k in prev:
        if k not in prev_weight or k not in new_weight:
            merged[k] = torch.lerp(prev[k], new[k], alpha)
            continue
        if not bool((prev_weight[k] >= 0).all() and (new_weight[k] >= 0).all()):
            raise UserError(
                f"merge weights of {k!r} contain negative or NaN values; they must be second moments "
                "(check that fine-tuning produced finite gradients: lower the learning rate or clip gradients)"
            )
        w_prev = (1 - alpha) * (prev_weight[k] + eps)
        w_new = alpha * (new_weight[k] + eps)
        total = w_prev + w_new
        # the same rule as the convex combination it is: θ̄ = lerp(θ̄(t−1), θ(t), w_new / total), which stays between
        # its inputs even for subnormal weights (the quotient form rounds past them)
        share = torch.where(total > 0, w_new / torch.where(total > 0, total, torch.ones_like(total)), alpha)
        merged[k] = torch.lerp(prev[k], new[k], share)
        carried_weight[k] = (1 - alpha) * prev_weight[k] + alpha * new_weight[k]
    return merged, carried_weight


def _task_weight(task: TaskModel, settings: MergeSettings) -> Params:
    if not settings.bias_correct:
        return task.second_moment
    return bias_corrected(task.second_moment, task.beta2, task.steps)


def merge_v_weighted(carried: Carried | None, task: TaskModel, settings: MergeSettings) -> Carried:
    """The holistic merge: weight each coordinate by Adam's v. Carries θ̄ and F̄ (Θ(1))."""
    weight = _task_weight(task, settings)
    if carried is None:  # the first task is kept whole; its v starts F̄
        return {"merged": dict(task.params), "weight": dict(weight)}
    merged, carried_weight = fisher_weighted_merge(
        carried["merged"], task.params, carried["weight"], weight, settings.alpha, settings.eps
    )
    return {"merged": merged, "weight": carried_weight}


def merge_interpolate(carried: Carried | None, task: TaskModel, settings: MergeSettings) -> Carried:
    """Plain continual interpolation θ̄(t) = (1 − α)·θ̄(t−1) + α·θ(t). Carries θ̄."""
    if carried is None:
        return {"merged": dict(task.params)}
    return {"merged": interpolate(carried["merged"], task.params, settings.alpha)}


def merge_average(carried: Carried | None, task: TaskModel, settings: MergeSettings) -> Carried:
    """Continual weight averaging: θ̄(t) = θ̄(t−1) + (θ(t) − θ̄(t−1)) / t, the mean of all task models."""
    if carried is None:
        return {"merged": dict(task.params)}
    return {"merged": interpolate(carried["merged"], task.params, 1.0 / settings.task_index)}


def merge_task_arithmetic(carried: Carried | None, task: TaskModel, settings: MergeSettings) -> Carried:
    """θ0 + λ·Σ τ with τ(t) = θ(t) − θ0. θ̄ itself is the running sum (θ̄ − θ0 = λ·Σ τ), so it carries θ̄ only."""
    base = settings.theta0 if carried is None else carried["merged"]
    return {
        "merged": {k: base[k] + settings.scale * (task.params[k] - settings.theta0[k]) for k in task.params}
    }


def merge_sequential(carried: Carried | None, task: TaskModel, settings: MergeSettings) -> Carried:
    """No merge: the new task's model replaces the old one (the lower bound on forgetting)."""
    return {"merged": dict(task.params)}


def _flat(params: Mapping[str, Tensor]) -> Tensor:
    return torch.cat([params[k].flatten() for k in sorted(params)])


def _unflat(vector: Tensor, like: Mapping[str, Tensor]) -> Params:
    sizes = [like[k].numel() for k in sorted(like)]
    return {k: v.view_as(like[k]) for k, v in zip(sorted(like), vector.split(sizes), strict=True)}


def ties_merge(task_vectors: Tensor, top_k: float, disjoint: str = "mean") -> Tensor:
    """TIES-merging (Yadav et al. 2023) of task vectors stacked as rows [T, d]:

    1. trim: keep the entries of each row whose |τ| is at least its (d − ⌊k·d⌋)-th smallest (the top k, ties kept);
    2. elect: γ = sign(Σ_t trimmed τ_t); a zero γ takes the sign of Σ γ (FusionBench's "majority");
    3. disjoint merge, per coordinate, of the trimmed entries whose sign agrees with γ: their mean (none: 0), or,
       with `disjoint="sum"`, their sum (FusionBench's continual TIES).
    """
    if not 0.0 < top_k < 1.0:
        raise UserError(f"TIES top_k must be a fraction in (0, 1), got {top_k}")
    d = task_vectors.shape[1]
    magnitude = task_vectors.abs()
    threshold = magnitude.kthvalue(max(1, d - int(d * top_k)), dim=1, keepdim=True).values
    trimmed = task_vectors * (magnitude >= threshold)
    sign = torch.sign(trimmed.sum(0))
    sign[sign == 0] = torch.sign(sign.sum())
    agree = torch.where(sign > 0, trimmed > 0, trimmed < 0)
    total = (trimmed * agree).sum(0)
    return total if disjoint == "sum" else total / agree.sum(0).clamp_min(1)


# λ of each TIES rule when MergeSettings.ties_scale is None: the values their references use
TIES_SCALES = {"ties": 0.5, "ties-store-all": 1.0}


def _ties_scale(settings: MergeSettings, rule: str) -> float:
    return TIES_SCALES[rule] if settings.ties_scale is None else settings.ties_scale


def merge_ties(carried: Carried | None, task: TaskModel, settings: MergeSettings) -> Carried:
    """Continual TIES, as FusionBench's OPCM baselines run it (`ContinualTiesMergingForCLIP`): at each task, TIES
    merges two rows, the merged task vector so far and the new one, with a disjoint *sum*, and λ times the result
    is added to the merged model:

        θ̄(1) = θ0 + λ·τ(1),   θ̄(t) = θ̄(t−1) + λ·TIES_sum(θ̄(t−1) − θ0, τ(t))   (λ = 0.5, k = 20 %)

    Carries θ̄ only: Θ(1)."""
    scale, theta0 = _ties_scale(settings, "ties"), {k: settings.theta0[k] for k in task.params}
    tau = {k: task.params[k] - theta0[k] for k in theta0}
    if carried is None:
        step = tau
    else:
        merged_vector = {k: carried["merged"][k] - theta0[k] for k in theta0}
        rows = torch.stack([_flat(merged_vector), _flat(tau)])
        step = _unflat(ties_merge(rows, settings.top_k, disjoint="sum"), theta0)
    base = theta0 if carried is None else carried["merged"]
    return {"merged": {k: base[k] + scale * step[k] for k in theta0}}


def merge_ties_store_all(carried: Carried | None, task: TaskModel, settings: MergeSettings) -> Carried:
    """TIES re-run over every task so far: θ̄(t) = θ0 + λ·TIES_mean(τ(1..t)) (λ = 1: the disjoint mean is already
    one task vector's scale). Trimming and sign election see every task vector, so it carries all of them: O(T)
    bytes (plus θ̄). Not a reference's continual rule: the batch TIES of Yadav et al. applied after each task."""
    vectors = dict(carried["task_vectors"]) if carried else {}
    vectors[str(settings.task_index)] = _flat({k: task.params[k] - settings.theta0[k] for k in task.params})
    merged_vector = ties_merge(torch.stack(list(vectors.values())), settings.top_k)
    theta0 = {k: settings.theta0[k] for k in task.params}
    update = _unflat(_ties_scale(settings, "ties-store-all") * merged_vector, theta0)
    return {"merged": {k: theta0[k] + update[k] for k in theta0}, "task_vectors": vectors}


def magmax_select(running: Mapping[str, Tensor], new: Mapping[str, Tensor]) -> Params:
    """MagMax's element-wise choice: the entry of larger |τ|; on equal magnitude the later task (`new`) wins."""
    return {k: torch.where(new[k].abs() >= running[k].abs(), new[k], running[k]) for k in running}


def merge_magmax(carried: Carried | None, task: TaskModel, settings: MergeSettings) -> Carried:
    """MagMax (Marczak et al. 2024): τ_max[j] = τ_{argmax_t |τ_t[j]|}[j], θ̄ = θ0 + λ·τ_max, with tasks fine-tuned
    sequentially (each starts from the previous fine-tuned model, so τ(t) = θ(t) − θ0 accumulates).
    Carries the running τ_max and the last fine-tuned model it continues from: Θ(1)."""
    new = {k: task.params[k] - settings.theta0[k] for k in task.params}
    tau = new if carried is None else magmax_select(carried["task_vector"], new)
    merged = {k: settings.theta0[k] + settings.magmax_scale * tau[k] for k in tau}
    return {"merged": merged, "task_vector": tau, "finetuned": dict(task.params)}


def fisher_merge_weight(fisher: Mapping[str, Tensor], floor: float) -> Params:
    """FusionBench's Fisher-merging weight of one model: (F + m) / (‖F‖ + m), ‖F‖ the L2 norm over all its
    parameters, m the floor (it keeps never-reached coordinates from a 0/0 and evens out models' Fisher scales)."""
    norm = torch.linalg.vector_norm(_flat(fisher))
    return {k: (v + floor) / (norm + floor) for k, v in fisher.items()}


def merge_fisher(carried: Carried | None, task: TaskModel, settings: MergeSettings) -> Carried:
    """Fisher merging (Matena & Raffel 2022): θ̄ = Σ_i w_i ⊙ θ_i / Σ_i w_i, w_i = `fisher_merge_weight(F_i)`.

    Continually it is the holistic recursion with α = 1/t on the running mean F̄ of the weights (exact, not an
    approximation), so it carries θ̄ and F̄: Θ(1). F_i is the diagonal Fisher at θ_i: the *true* Fisher (labels
    from the model's own predictive distribution, the default) or the *empirical* Fisher (the data's labels),
    which the literature often calls "the Fisher" but which is only a Fisher where the model fits the data.
    """
    if task.fisher is None:
        raise UserError(
            "the fisher rule needs the task's Fisher: compute it after fine-tuning (TaskModel.fisher)"
        )
    weight = fisher_merge_weight(task.fisher, settings.fisher_floor)
    if carried is None:
        return {"merged": dict(task.params), "weight": weight}
    merged, carried_weight = fisher_weighted_merge(
        carried["merged"], task.params, carried["weight"], weight, 1.0 / settings.task_index
    )
    return {"merged": merged, "weight": carried_weight}


def opcm_blocks(name: str, tensor: Tensor) -> list[Tensor] | None:
    """The linear maps OPCM projects in one tensor, as [out, in] views, or None for a tensor merged unprojected.

    FusionBench's `opcm` projects the weight of every ``nn.Linear`` and nothing else. In open_clip's names:
    - ``*.in_proj_weight`` ([3W, W], nn.MultiheadAttention's fused q, k, v) is three maps, projected one by one, as
      FusionBench's CLIP (Hugging Face) has q_proj, k_proj, v_proj as separate nn.Linear;
    - any other 2-D ``*.weight`` is an nn.Linear weight (out_proj, c_fc, c_proj);
    - a 1×1 convolution is a linear map per pixel, projected too (this toolkit's choice for EfficientNet, whose
      top has no nn.Linear; FusionBench's models have none).
    Unprojected: the positional and class embeddings (not linear maps), ``visual.proj`` (a bare parameter in
    open_clip; FusionBench's CLIPVisionModel has no projection to merge), patch convolutions, biases, norms."""
    if tensor.ndim == 4 and tensor.shape[2:] == (1, 1):
        return [tensor.flatten(1)]
    if tensor.ndim != 2:
        return None
    if name.endswith("in_proj_weight") and tensor.shape[0] == 3 * tensor.shape[1]:
        return list(tensor.chunk(3))
    return [tensor] if name.endswith(".weight") or name == "weight" else None


def opcm_project(merged_vector: Tensor, task_vector: Tensor, alpha: float) -> tuple[Tensor, int]:
    """OPCM's projection of a matrix task vector τ against the merged task vector τ̄ = U S Vᵀ (full SVD):

        P = Uᵀ τ V;  P_ii = 0 for every i;  P[:r, :r] = 0, r = the first index where cumsum(S)/ΣS > α;
        τ_⊥ = U P Vᵀ

    so τ_⊥ has no component on any u_i v_iᵀ (it is Frobenius-orthogonal to τ̄) nor in the top-r block of τ̄'s
    subspace. Returns (τ_⊥, r). A zero τ̄ has no subspace: τ is returned whole.
    """
    u, s, vh = torch.linalg.svd(merged_vector, full_matrices=True)
    if s.sum() == 0:
        return task_vector, 0
    rank = int((s.cumsum(0) / s.sum() > alpha).float().argmax())
    projected = u.T @ task_vector @ vh.T
    projected.diagonal().zero_()
    projected[:rank, :rank] = 0
    return u @ projected @ vh, rank


def merge_opcm(carried: Carried | None, task: TaskModel, settings: MergeSettings) -> Carried:
    """Orthogonal projection continual merging (Tang et al. 2025), as in FusionBench's `opcm`:

        S(t) = λ(t−1)·τ̄(t−1) + τ_⊥(t)   (τ_⊥ = `opcm_project` for each linear map of `opcm_blocks`, τ(t) itself
                                          for every other tensor)
        λ(t) = ‖S(t)‖ / mean_i ‖τ(i)‖,   θ̄(t) = θ0 + S(t) / λ(t)

    so the merged task vector keeps the average task-vector norm. Carries θ̄, λ and the running mean norm: Θ(1).
    """
    tau = {k: task.params[k] - settings.theta0[k] for k in task.params}
    norm = torch.linalg.vector_norm(_flat(tau))
    if carried is None:
        scalars = {"lambda": torch.ones(()), "mean_norm": norm}
        return {"merged": dict(task.params), "scalars": scalars}
    lam, mean_norm = carried["scalars"]["lambda"], carried["scalars"]["mean_norm"]
    mean_norm = mean_norm + (norm - mean_norm) / settings.task_index
    total = {}
    for k, new in tau.items():
        previous = carried["merged"][k] - settings.theta0[k]
        blocks, new_blocks = opcm_blocks(k, previous), opcm_blocks(k, new)
        cleaned = new
        if blocks is not None:
            projected = [
                opcm_project(b, n, settings.opcm_alpha)[0] for b, n in zip(blocks, new_blocks, strict=True)
            ]
            cleaned = torch.cat(projected).view_as(new)
        total[k] = lam * previous + cleaned
    lam = torch.linalg.vector_norm(_flat(total)) / mean_norm
    merged = {k: settings.theta0[k] + v / lam for k, v in total.items()}
    return {"merged": merged, "scalars": {"lambda": lam, "mean_norm": mean_norm}}


def merge_ewc(carried: Carried | None, task: TaskModel, settings: MergeSettings) -> Carried:
    """Elastic weight consolidation's bookkeeping, not a merge: the model served is θ(t), trained from θ(t−1)
    under the penalty λ/2 · Σ F̄ ⊙ (θ − θ(t−1))² (finetune.ewc_penalty). F̄(t) = F̄(t−1) + F(t), one accumulated
    diagonal Fisher (online EWC, γ = 1). Carries θ(t) and F̄: Θ(1)."""
    if task.fisher is None:
        raise UserError(
            "the ewc rule needs the task's Fisher: compute it after fine-tuning (TaskModel.fisher)"
        )
    weight = task.fisher if carried is None else {k: carried["weight"][k] + v for k, v in task.fisher.items()}
    return {"merged": dict(task.params), "weight": dict(weight)}


MergeRule = Callable[[Carried | None, TaskModel, MergeSettings], Carried]

MERGE_RULES: dict[str, MergeRule] = {
    "v-weighted": merge_v_weighted,
    "interpolate": merge_interpolate,
    "average": merge_average,
    "task-arithmetic": merge_task_arithmetic,
    "sequential": merge_sequential,
    "ties": merge_ties,
    "ties-store-all": merge_ties_store_all,
    "magmax": merge_magmax,
    "fisher": merge_fisher,
    "opcm": merge_opcm,
    "ewc": merge_ewc,
}

NEEDS_FISHER = frozenset({"fisher", "ewc"})  # rules that read TaskModel.fisher
