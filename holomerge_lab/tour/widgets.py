"""ipywidgets panels for the notebooks: controls, Run buttons, a progress bar, a results table that accumulates
and a figure area.

Each control sets one `RunConfig` field (its description is the field's name, its CSS class `hm-<field>`); a
button turns the panel's config into a list of configs (its plan) and runs each with the function the CLI uses
(`pipeline.run` on a shared `prepare`). Figures are plain `go.Figure`s redrawn in an `Output`. A click that
arrives while a run is in progress is ignored; an error is shown in the panel, which stays usable.
"""

from __future__ import annotations

import dataclasses
import itertools
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go
from IPython.core.interactiveshell import InteractiveShell
from IPython.display import display

from ..analysis import evidence, stats
from ..data import FOLDER_STREAMS, STREAMS, cache_dir, max_tasks
from ..errors import UserError
from ..experiment.config import METHODS, RunConfig
from ..experiment.evaluation import Prepared
from ..experiment.pipeline import RunResult, prepare, run
from ..method.align import LOSSES
from ..models.effnet import EFFNET_BLOCKS
from . import shipped
from .viz import comparison_figure, html_table

_SLIDER = dict(continuous_update=False, style={"description_width": "initial"})

# RunConfig field -> the widget that sets it, built from the field's current value
CONTROLS: dict[str, Callable[[Any], W.ValueWidget]] = {
    **{s: (lambda v, s=s: W.Checkbox(value=bool(v), description=s, indent=False)) for s in ("pre", "during", "post")},
    "center": lambda v: W.Checkbox(value=bool(v), description="center", indent=False),
    "stream": lambda v: W.Dropdown(options=list(STREAMS), value=v, description="stream"),
    "method": lambda v: W.Dropdown(options=list(METHODS), value=v, description="method"),
    "tasks": lambda v: W.IntSlider(value=v, min=2, max=max(20, v), description="tasks", **_SLIDER),
    "train_per_task": lambda v: W.IntSlider(value=v, min=20, max=max(2000, v), step=20, description="train_per_task", **_SLIDER),
    "test_per_task": lambda v: W.IntSlider(value=v, min=20, max=max(1000, v), step=20, description="test_per_task", **_SLIDER),
    "steps": lambda v: W.IntSlider(value=v, min=1, max=max(500, v), description="steps", **_SLIDER),
    "alpha": lambda v: W.FloatSlider(value=v, min=0.05, max=1.0, step=0.05, description="alpha", **_SLIDER),
    "align_loss": lambda v: W.Dropdown(options=list(LOSSES), value=v, description="align_loss"),
    "align_parameter": lambda v: W.Dropdown(options=["bias", "projection"], value=v, description="align_parameter"),
    "align_teacher": lambda v: W.Dropdown(options=["previous", "current"], value=v, description="align_teacher"),
    "align_steps": lambda v: W.IntSlider(value=v, min=1, max=max(200, v), description="align_steps", **_SLIDER),
    "align_lr": lambda v: W.FloatLogSlider(value=v, base=10, min=-8, max=-1, step=0.5, description="align_lr", **_SLIDER),
    "lr": lambda v: W.FloatLogSlider(value=v, base=10, min=-5, max=-1, step=0.25, description="lr", **_SLIDER),
    "trainable_from": lambda v: W.IntSlider(value=v, min=0, max=max(EFFNET_BLOCKS - 1, v), description="trainable_from", **_SLIDER),
    "seed": lambda v: W.BoundedIntText(value=v, min=0, max=2**31 - 1, description="seed"),
}  # fmt: skip

# The fields `prepare` reads: runs that agree on them share one Prepared
PREPARE_FIELDS = (
    "stream", "tasks", "train_per_task", "test_per_task", "order", "seed", "backbone", "image_size",
    "trainable_from", "center", "logit_scale",
)  # fmt: skip


def control(field: str, config: RunConfig) -> W.ValueWidget:
    """The widget for one RunConfig field, set to the config's value (or the preset's, if left unset)."""
    if field not in CONTROLS:
        raise UserError(f"no control for {field!r}; choose from {', '.join(CONTROLS)}")
    value = getattr(config, field)
    if value is None:
        value = getattr(config.resolve(), field)
    if value is None:
        raise UserError(f"set {field} in the panel's config: a slider needs a starting value")
    widget = CONTROLS[field](value)
    if field == "stream" and config.data_root is None:  # folder streams need a data root: not offered without
        widget.options = [s for s in STREAMS if s not in FOLDER_STREAMS or s == value]
        widget.value = value  # new options reset a dropdown to its first: set the config's stream again
    if widget.value != value:
        raise UserError(f"the {field} control shows {widget.value!r}, its config has {value!r}")
    widget.add_class(f"hm-{field}")
    return widget


def stage_combinations(config: RunConfig) -> list[RunConfig]:
    """The holistic method with every on/off combination of the three stages (8 configs), all stages on first."""
    return [
        dataclasses.replace(config, method="holistic", pre=pre, during=during, post=post)
        for pre, during, post in itertools.product((True, False), repeat=3)
    ]


def group_runs(results: Sequence[RunResult]) -> list[list[RunResult]]:
    """Consecutive runs of one configuration on distinct seeds form one group (one press of Run over n seeds);
    a repeated seed or any other change of setting starts a new group."""
    groups: list[list[RunResult]] = []
    for r in results:
        same = groups and _without_seed(groups[-1][0]) == _without_seed(r)
        if same and r.seed not in {g.seed for g in groups[-1]}:
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


def _without_seed(result: RunResult) -> tuple:
    return (
        result.label,
        result.stream,
        len(result.acc_matrix),
        {k: v for k, v in result.config.items() if k != "seed"},
    )


def run_rows(results: Sequence[RunResult]) -> list[dict]:
    """The results table, one numbered row per group of seeds (see `group_runs`): mean ± 95 % CI over its seeds,
    with the stream and task count (runs on different streams mix)."""
    groups = group_runs(results)
    rows = [evidence.summary_table(evidence.summarize([r.to_json() for r in g]))[0] for g in groups]
    return [
        {"#": i + 1, "stream": g[0].stream, "tasks": len(g[0].acc_matrix), **row}
        for i, (g, row) in enumerate(zip(groups, rows, strict=True))
    ]


def effects_html(results: Sequence) -> str:
    """The paired effects of one press's runs (holistic − each other row, on the seeds both have) with their raw and
    Holm-adjusted verdicts; empty unless the press ran holistic and another row on 3 seeds or more."""
    runs = [r.to_json() for r in results if isinstance(r, RunResult)]
    if len({r["seed"] for r in runs}) < stats.MIN_SEEDS_FOR_VERDICT or len({r["stream"] for r in runs}) != 1:
        return ""
    paired = evidence.effects(runs)
    if not paired:
        return ""
    heading = (f"Paired effects of this press, in points (holistic − row on each seed; verdicts at level 0.05, Holm "
               f"over its {len(paired)} rows, equivalence within {stats.margin_words(stats.MARGIN)})")  # fmt: skip
    return f"<p><b>{heading}</b></p>" + html_table(evidence.effects_table(paired), "hm-effects")


def numbered_comparison(results: Sequence[RunResult]) -> go.Figure:
    """The comparison bar chart with one bar per group of seeds, named by its number so repeated labels stay
    apart; error bars where a group has several seeds."""
    numbered = [
        dataclasses.replace(r, label=f"#{i + 1} {r.label}")
        for i, g in enumerate(group_runs(results))
        for r in g
    ]
    figure = comparison_figure(numbered)
    figure.update_layout(title="Final accuracy, every run so far")
    return figure


def with_seeds(configs: Sequence[RunConfig], n: int) -> list[RunConfig]:
    """Each config on n seeds: its own seed and the n − 1 after it."""
    out = []
    for c in configs:
        first = c.resolve().seed
        out += [dataclasses.replace(c, seed=first + k) for k in range(n)]
    return out


def show_in(output: W.Output, *items: object) -> None:
    """Make `output` show `items` (figures, or text) in place of what it showed.

    The outputs are set on the widget, not captured with `with output:`. Under nbclient (the notebook tests, Voila,
    the book) a cell that captured a plotly figure now and then never finished: of 3 runs of 40 such cells, one
    stalled, while set directly every run took 7–9 s (benchmarks/output_capture.py, benchmarks/RESULTS.md).
    Setting `outputs` is what ipywidgets' own `Output.append_display_data` does (drawn here in JupyterLab and Voila)."""
    output.outputs = tuple(_output_of(item) for item in items)


def _output_of(item: object) -> dict:
    if isinstance(item, str):
        return {
            "output_type": "stream",
            "name": "stdout",
            "text": item if item.endswith("\n") else item + "\n",
        }
    if hasattr(item, "_repr_mimebundle_"):  # a plotly figure: the formatter would display it, not return it
        data, metadata = item._repr_mimebundle_(), {}
    else:
        data, metadata = InteractiveShell.instance().display_formatter.format(item)
    return {"output_type": "display_data", "data": data, "metadata": metadata}


def _run_one(config: RunConfig, prepared: Prepared, progress: bool, **_) -> RunResult:
    """`pipeline.run` with the disk cache of fine-tuned tasks: toggling the merge or the alignment reruns fast."""
    return run(config, prepared, progress=progress, task_cache=cache_dir() / "task-models")


def prepare_key(config: RunConfig) -> tuple:
    """What `prepare` reads of a config: runs that agree on it share one Prepared."""
    resolved = config.resolve()
    return tuple(getattr(resolved, f) if f != "order" else tuple(resolved.order or ()) for f in PREPARE_FIELDS)


def fine_tune_steps(config: RunConfig) -> int | None:
    """The fine-tuning steps of a run without the cache (None when set by epochs: the data decides)."""
    resolved = config.resolve()
    return resolved.steps * resolved.tasks if resolved.steps and resolved.tasks else None


class Panel:
    """Controls + buttons + progress bar + accumulating results table + figure area.

    - `fields`: RunConfig fields to expose (one control each; see CONTROLS).
    - `extra`: more widgets whose values are passed to `execute` by name (e.g. which task to inspect).
    - `plans`: button description -> config -> configs to run (default: {"Run": the config itself}).
    - `seeds`: with a number, a "seeds" slider (starting there): every config of a plan runs on that many seeds
      (its own and the following ones), and the default table and figure show mean ± 95 % CI per group.
    - `execute(config, prepared, progress, **extra) -> result` (default: `pipeline.run`).
    - `rows(results) -> list[dict]` and `figure(results) -> go.Figure | list[go.Figure]` redraw after each run
      from every result so far.
    - `recorded(configs) -> (runs, where) | None`: a press whose runs were all recorded (the shipped bundle, by
      default) is answered from them at once, labelled with the command that made them; the "rerun live" box
      runs it here instead.
    - Live runs go one after another in this process, on torch's intra-op threads (both cores of a 2-core
      machine), each row shown as it lands. Seeds side by side in worker processes were measured and dropped:
      one thread each they are no faster on 2 cores, and a run's numbers depend on its thread count
      (benchmarks/bench_press.py).
    """

    def __init__(
        self,
        config: RunConfig,
        fields: Sequence[str] = (),
        *,
        extra: Mapping[str, W.ValueWidget] | None = None,
        plans: Mapping[str, Callable[[RunConfig], list[RunConfig]]] | None = None,
        execute: Callable[..., Any] = _run_one,
        rows: Callable[[list], list[dict]] = run_rows,
        figure: Callable[[list], go.Figure | Sequence[go.Figure]] = numbered_comparison,
        progress: bool = True,
        seeds: int | None = None,
    ):
        self.base = config
        self.controls = {f: control(f, config) for f in fields}
        if (
            "tasks" in self.controls
        ):  # the slider stops at what the stream holds, and follows a change of stream
            self._fit_tasks(self.controls["stream"].value if "stream" in self.controls else config.stream)
            if "stream" in self.controls:
                self.controls["stream"].observe(lambda change: self._fit_tasks(change["new"]), names="value")
        self.seeds = None
        if seeds is not None:
            self.seeds = W.IntSlider(value=seeds, min=1, max=max(10, seeds), description="seeds", **_SLIDER)
            self.seeds.add_class("hm-seeds")
        self.extra = dict(extra or {})
        self.plans = dict(plans or {"Run": lambda c: [c]})
        self.execute, self.rows, self.draw, self.progress = execute, rows, figure, progress
        self.results: list = []
        self.pressed = 0  # where the latest press's results begin in `results`: its paired effects are shown
        self.figures: list[go.Figure] = []
        self.error: str | None = None
        self.running = False
        self.seconds_per_step: float | None = None  # measured: fine-tuning dominates a run's time
        self.recorded: Callable[[Sequence[RunConfig]], tuple[list, str] | None] | None = shipped.bundle_lookup
        self._prepared: dict[tuple, Prepared] = {}
        self.buttons = {name: W.Button(description=name, button_style="primary") for name in self.plans}
        for name, button in self.buttons.items():
            button.add_class("hm-run" if name == "Run" else "hm-button")
            button.on_click(lambda _, name=name: self.click(name))
        self.rerun_live = W.Checkbox(value=False, description="rerun live", indent=False)
        self.rerun_live.add_class("hm-rerun-live")
        self.bar = W.IntProgress(value=0, min=0, max=1, description="idle")
        self.bar.add_class("hm-progress")
        self.status = W.HTML()
        self.table = W.HTML(html_table([], "hm-results"))
        self.table.add_class("hm-results")
        self.output = W.Output()
        self.output.add_class("hm-figure")
        inputs = [*self.controls.values(), *([self.seeds] if self.seeds else []), *self.extra.values()]
        self.widget = W.VBox([
            W.HBox(inputs[:4], layout=W.Layout(flex_flow="row wrap")),
            *([W.HBox(inputs[4:], layout=W.Layout(flex_flow="row wrap"))] if inputs[4:] else []),
            W.HBox([*self.buttons.values(), self.rerun_live, self.bar, self.status]),
            self.table, self.output,
        ])  # fmt: skip
        self.widget.add_class("hm-panel")

    def _fit_tasks(self, stream: str) -> None:
        slider = self.controls["tasks"]
        most = max_tasks(stream, self.base.data_root)
        slider.max = max(slider.min, min(most, max(20, slider.value)))  # DIL: up to 20 here, more by typing

    def _ipython_display_(self):
        display(self.widget)

    def config(self) -> RunConfig:
        """The base config with every control's value."""
        return dataclasses.replace(self.base, **{f: w.value for f, w in self.controls.items()})

    @property
    def prepared(self) -> Prepared | None:
        """The stream, backbone and features the last run here used (None after a press answered from
        records)."""
        return next(iter(self._prepared.values()), None)

    def _prepare(self, config: RunConfig) -> Prepared:
        key = prepare_key(config)
        if key not in self._prepared:
            self._prepared = {key: prepare(config, progress=self.progress)}  # keep one: data is large
        return self._prepared[key]

    def planned(self, name: str = "Run") -> list[RunConfig]:
        """The configs the button `name` would run now: its plan of the controls' config, on the chosen seeds."""
        configs = self.plans[name](self.config())
        return with_seeds(configs, self.seeds.value) if self.seeds is not None else list(configs)

    def show_results(self, results: Sequence, note: str = "") -> None:
        """Add results made elsewhere (shipped ones: `shipped.Results.click`) and redraw, as if run here."""
        self.pressed = len(self.results)
        self.results.extend(results)
        self.status.value = f'<span class="hm-note">{note}</span>' if note else ""
        self._redraw()

    def click(self, name: str = "Run", configs: Sequence[RunConfig] | None = None) -> None:
        """What the button `name` does: run its plan (or `configs`, already planned), add the results, redraw.
        Ignored while a run is going on."""
        if self.running:
            return
        self.running = True
        for button in self.buttons.values():
            button.disabled = True
        self.error = None
        self.status.value = ""
        try:
            configs = self.planned(name) if configs is None else configs
            found = self._recorded(configs)
            if found is not None:
                runs, where = found
                self.show_results(runs, f"recorded by {where}; tick \u201crerun live\u201d to run it here")
                return
            self.status.value = self.estimate(configs)
            self._run_live(configs, {k: w.value for k, w in self.extra.items()})
        except Exception as e:  # shown in the panel: JupyterLab shows callback errors nowhere else
            self.error = str(e) if isinstance(e, UserError) else traceback.format_exc()
            self.status.value = (
                f'<span class="hm-error" style="color:#b00">error: {type(e).__name__}: {e}</span>'
            )
            self.output.append_stderr(self.error)
        finally:
            self.running = False
            for button in self.buttons.values():
                button.disabled = False

    def _recorded(self, configs: Sequence[RunConfig]) -> tuple[list, str] | None:
        """The recorded runs of this press, where it is a plain run of configs (no extra inputs) and not live."""
        if self.rerun_live.value or self.recorded is None or self.execute is not _run_one or self.extra:
            return None
        return self.recorded(configs)

    def _run_live(self, configs: Sequence[RunConfig], extra: dict) -> None:
        """Every config, one after another; each result is shown as it lands. An error stops the runs not yet
        started."""
        self.bar.max, self.bar.value, self.bar.description = len(configs), 0, f"0/{len(configs)}"
        self.pressed = len(self.results)
        for config in configs:
            result = self.execute(config, self._prepare(config), self.progress, **extra)
            steps = fine_tune_steps(config)
            if isinstance(result, RunResult) and steps:  # the slowest so far: cached runs are faster
                self.seconds_per_step = max(self.seconds_per_step or 0.0, result.seconds / steps)
            self.results.append(result)
            self.bar.value += 1
            self.bar.description = f"{self.bar.value}/{len(configs)}"
            self._redraw()

    def estimate(self, configs: Sequence[RunConfig]) -> str:
        """The time a plan may take, from its fine-tuning steps × the slowest step time measured so far."""
        steps = [fine_tune_steps(c) for c in configs]
        if self.seconds_per_step is None or None in steps:
            return ""
        seconds = sum(steps) * self.seconds_per_step
        return (
            f'<span class="hm-estimate">up to ≈{seconds:.0f} s (cached fine-tuned tasks are skipped)</span>'
        )

    def _redraw(self) -> None:
        self.table.value = html_table(self.rows(self.results), "hm-results") + effects_html(self.results[self.pressed :])
        drawn = self.draw(self.results)
        self.figures = [drawn] if isinstance(drawn, go.Figure) else list(drawn)
        show_in(self.output, *self.figures)
