"""One task of the continual loop: the paper's Algorithm 1, and beside it each baseline's step.

`pipeline.run` calls one step per task, `STEPS[method](run, carried, t) -> Step`, and keeps around it what every
method shares (evaluation, bytes carried, checkpoints, resume). A step receives the merge rule's state after task
t − 1 (`carried`: θ̄(t−1) as carried["merged"], plus what the rule keeps, e.g. the running v-sum) and returns the
state after task t with the model to serve. `holistic_step` is the method of the paper; the baselines' special
cases (a penalty, another start point, no merge at all) live in their own steps below it, not inside it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from ..method.finetune import ewc_penalty
from ..method.merging import MERGE_RULES, NEEDS_FISHER, Carried, MergeSettings, Params, TaskModel
from .config import METHODS, RunConfig
from .evaluation import Prepared
from .task_cache import cached_task, task_key
from .training import align_task, task_inputs, train_task


@dataclass(frozen=True)
class Merge:
    """One merge inside `run`, for observers: what was carried in, the new task's model, and the result."""

    task: int  # 0-based index of the task just merged
    forward: Callable[..., Tensor]  # the run's model function (tangent or standard)
    carried: Carried | None  # the merge rule's state before this task (None before the first)
    task_model: TaskModel  # θ(t) and its Adam v
    settings: MergeSettings  # the merge's settings (α, ε, bias correction)
    merged: Params  # the merge's output, before alignment
    aligned: Params  # the model served after the task (= merged when alignment is off)
    teacher: Params  # what alignment pulls the features towards (θ̄(t−1) or θ(t), per align_teacher)


Observer = Callable[[Merge], None]


@dataclass(frozen=True)
class Step:
    """What one task's step hands back to the loop."""

    carried: Carried | None  # the state the next task receives (None: the method carries no merge state)
    served: Params  # the model evaluated after this task
    losses: list[float] | None = None  # this task's fine-tuning losses (None: nothing was fine-tuned)


@dataclass
class TaskRun:
    """What every task's step of one run shares: the prepared run, its settings, the run's model function
    (f_lin around θ0 when `pre`, else the network itself) and the fine-tuning, merge and alignment calls."""

    prep: Prepared
    config: RunConfig
    forward: Callable[..., Tensor]
    bar: object  # the run's tqdm bar: fine-tuning steps done
    steps: int  # fine-tuning steps of one task (a task-cache hit advances the bar by as many)
    task_cache: Path | None = None
    observer: Observer | None = None
    reused: int = 0  # task models taken from the task cache
    joint: tuple[TaskModel, list[float]] | None = None  # `joint`'s one model, trained at its first step

    @property
    def theta0(self) -> Params:
        return self.prep.theta0

    @property
    def rule(self) -> str | None:
        """The method's merge rule (MERGE_RULES); None for the methods that do not merge."""
        return METHODS[self.config.method][0]

    def start(self, carried: Carried | None) -> Params:
        """Where fine-tuning of the next task starts (`config.start`): θ̄(t−1) ("merged"), θ0 ("pretrained") or
        the previous task's fine-tuned model ("previous": MagMax's sequential fine-tuning). θ0 for the first."""
        if carried is None or self.config.start == "pretrained":
            return self.theta0
        return carried["merged" if self.config.start == "merged" else "finetuned"]

    def fine_tune(
        self, start: Params, t: int, *, penalty: Callable[[Params], Tensor] | None = None, fisher: bool = False
    ) -> tuple[TaskModel, list[float]]:
        """Task t fine-tuned from `start` (training.train_task), through the task cache when the run has one and
        nothing outside the task decides the result (EWC's penalty depends on the whole history)."""
        seed = self.config.seed + 1000 * t
        train = functools.partial(
            train_task, self.prep, self.config, self.forward, start, t, self.bar, seed, penalty=penalty, fisher=fisher
        )
        if self.task_cache is None or penalty is not None:
            return train()
        inputs = task_inputs(self.prep, self.config, start, t, fisher)
        device = next(iter(start.values())).device
        task, losses, hit = cached_task(self.task_cache, task_key(inputs), train, device, like=start)
        self.bar.update(self.steps if hit else 0)
        self.reused += hit
        return task, losses

    def merge(self, rule: str, carried: Carried | None, task: TaskModel, t: int) -> tuple[Carried, MergeSettings]:
        """The merge rule `rule` applied to the carried state and task t's model, with the run's settings."""
        c = self.config
        settings = MergeSettings(
            theta0=self.theta0, task_index=t + 1, alpha=c.alpha, scale=c.scale,
            eps=c.eps if c.variant == "clean" else 0.0, bias_correct=c.variant == "clean", top_k=c.top_k,
            ties_scale=c.ties_scale, magmax_scale=c.magmax_scale, opcm_alpha=c.opcm_alpha,
        )  # fmt: skip
        return MERGE_RULES[rule](carried, task, settings), settings

    def align(self, merged: Params, teacher: Params, t: int) -> Params:
        """Stage 3 on task t's training images (training.align_task)."""
        return align_task(self.prep, self.config, self.forward, merged, teacher, t)

    def teacher(self, previous: Params, task: TaskModel) -> Params:
        """What alignment pulls the merged features towards: θ̄(t−1) ("previous", the authors') or θ(t)."""
        return previous if self.config.align_teacher == "previous" else task.params

    def observe(self, merge: Merge) -> None:
        if self.observer is not None:
            self.observer(merge)


def holistic_step(run: TaskRun, carried: Carried | None, t: int) -> Step:
    """Algorithm 1 of the paper, task t, each stage behind its toggle.
    1 (pre): fine-tune θ(t) from θ̄(t−1); `run.forward` is f_lin(x; θ) = f(x; θ0) + J·(θ − θ0) when `pre`.
    2 (during): merge θ(t) into θ̄(t−1) weighted by Adam's v against the carried F̄(t−1), the running
       (1 − α, α) average of the tasks' v; else interpolate. The first task is kept whole.
    3 (post): pull the merged model's features towards the teacher's on task t's images (none for task 1)."""
    previous = run.theta0 if carried is None else carried["merged"]  # θ̄(t−1)
    task, losses = run.fine_tune(run.start(carried), t)  # θ(t) and its v(t)
    new, settings = run.merge("v-weighted" if run.config.during else "interpolate", carried, task, t)
    merged, teacher = new["merged"], run.teacher(previous, task)  # θ̄(t)
    if run.config.post and t > 0:
        new["merged"] = run.align(merged, teacher, t)
    run.observe(Merge(t, run.forward, carried, task, settings, merged, new["merged"], teacher))
    return Step(new, new["merged"], losses)


def merge_step(run: TaskRun, carried: Carried | None, t: int) -> Step:
    """Every other merge method: fine-tune from the method's start point (EWC adds its penalty from the second
    task on, and its rule and Fisher merging take the task's Fisher), merge by the method's rule, no alignment."""
    previous = run.theta0 if carried is None else carried["merged"]
    penalty = None
    if run.rule == "ewc" and carried is not None:
        penalty = ewc_penalty(carried["merged"], carried["weight"], run.config.ewc_strength)
    task, losses = run.fine_tune(run.start(carried), t, penalty=penalty, fisher=run.rule in NEEDS_FISHER)
    new, settings = run.merge(run.rule, carried, task, t)
    merged = new["merged"]
    run.observe(Merge(t, run.forward, carried, task, settings, merged, merged, run.teacher(previous, task)))
    return Step(new, merged, losses)


def individual_step(run: TaskRun, carried: Carried | None, t: int) -> Step:
    """Each task's own model, fine-tuned from θ0 and never merged (the loop scores it on its own task only)."""
    task, losses = run.fine_tune(run.start(None), t)
    return Step(None, task.params, losses)


def zero_shot_step(run: TaskRun, carried: Carried | None, t: int) -> Step:
    """θ0 itself: the floor every method should clear."""
    return Step(None, run.theta0)


def joint_step(run: TaskRun, carried: Carried | None, t: int) -> Step:
    """One model fine-tuned on every task at once, served after each task: what seeing all data reaches. It is
    trained at the run's first step; its losses are recorded once, at task 0."""
    fresh = run.joint is None
    if fresh:
        run.joint = train_task(run.prep, run.config, run.forward, run.theta0, None, run.bar, run.config.seed)
    model, losses = run.joint
    return Step(None, model.params, losses if fresh and t == 0 else None)


STEPS: dict[str, Callable[[TaskRun, Carried | None, int], Step]] = {
    **{method: merge_step for method, (rule, _) in METHODS.items() if rule is not None},
    "holistic": holistic_step,
    "individual": individual_step,
    "zero-shot": zero_shot_step,
    "joint": joint_step,
}
