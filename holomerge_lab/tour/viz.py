"""Plotly figures of runs, a self-contained HTML report, and the renderer set-up for each notebook front end.

Figures are plain `go.Figure`s (not FigureWidget, which needs anywidget and breaks on Colab and VS Code); widgets
redraw them inside an `ipywidgets.Output`.
"""

from __future__ import annotations

import html
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from ..analysis import evidence, stats
from ..analysis.probes import AlignmentStep, AlphaCurve, by_seed, plasticity
from ..data import TaskStream
from ..experiment.pipeline import RunResult
from ..files import atomic_write_text


def setup_renderer() -> str:
    """Pick plotly's renderer for the front end this runs in, and return its name."""
    if "google.colab" in sys.modules:
        name = "colab"
    elif "VSCODE_PID" in os.environ or "VSCODE_CWD" in os.environ:
        name = "vscode"
    else:  # JupyterLab / Notebook 7 / Voilà. Not "+notebook": it puts all of plotly.js (~4.8 MB) into every
        # figure shown in an ipywidgets.Output, which stalls the kernel's output capture (and nbclient) for minutes
        name = "plotly_mimetype"
    pio.renderers.default = name
    return name


def accuracy_matrix_figure(result: RunResult) -> go.Figure:
    """R[i][j] as a heat map: row = after task i, column = tested on task j."""
    matrix = result.acc_matrix
    n = len(matrix)
    text = [["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in matrix]
    figure = go.Figure(
        go.Heatmap(
            z=matrix, x=[f"task {j + 1}" for j in range(n)], y=[f"after {i + 1}" for i in range(n)],
            text=text, texttemplate="%{text}", zmin=0, zmax=1, colorscale="Viridis", colorbar=dict(title="acc"),
        )
    )  # fmt: skip
    figure.update_layout(  # two short title lines: one long line was cut off at the figure's width
        title=dict(text=f"{result.label} on {result.stream}, seed {result.seed}<br><sup>ACC "
                   f"{result.acc_task_mean:.3f} (task mean), {result.acc_pooled:.3f} (pooled), BWT {result.bwt:+.3f}</sup>"),
        xaxis_title="tested on task j", yaxis=dict(autorange="reversed", title="after learning task i"),
        width=max(520, 440 + 20 * n), height=380 + 20 * n, margin=dict(t=90),
    )  # fmt: skip
    return figure


def comparison_figure(results: Sequence[RunResult]) -> go.Figure:
    """Final accuracy per row: the mean over seeds (bars) with its 95 % CI (error bars), each seed's value (dots),
    and the joint-test accuracy (diamonds). The axis spans the data, not 0..1: a 1-point difference stays visible."""
    summary = evidence.summarize([r.to_json() for r in results])
    labels = [row["label"] for row in summary]
    acc, joint = [row["ACC (task mean)"] for row in summary], [row["ACC (pooled)"] for row in summary]
    seeds = [(r.label, r.acc) for r in results]
    several = any(row["n"] > 1 for row in summary)
    bar_name = "ACC (task mean)" + (", mean ± 95% CI over seeds" if several else "")
    figure = go.Figure(
        [
            go.Bar(x=labels, y=[i.mean for i in acc], name=bar_name, text=[f"{i.mean:.3f}" for i in acc],
                   textposition="inside",
                   error_y=dict(type="data", symmetric=False, array=[i.high - i.mean for i in acc],
                                arrayminus=[i.mean - i.low for i in acc], visible=several)),
            go.Scatter(x=[s[0] for s in seeds], y=[s[1] for s in seeds], mode="markers", name="each seed",
                       marker=dict(size=6, color="rgba(0,0,0,0.45)"), visible=True if several else "legendonly"),
            go.Scatter(x=labels, y=[i.mean for i in joint], mode="markers", name="ACC (pooled over test images)",
                       marker=dict(symbol="diamond", size=10, color="black")),
        ]
    )  # fmt: skip
    values = [i.low for i in acc + joint] + [i.high for i in acc + joint]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = max(0.02, 0.1 * (high - low))
    stream = results[0].stream if results else ""
    n = max((row["n"] for row in summary), default=0)
    figure.update_layout(
        title=f"Final accuracy on {stream}" + (f" ({n} seeds)" if several else " (one seed: a preview)"),
        yaxis=dict(range=[max(0.0, low - pad), min(1.0, high + pad) + 0.01], title="accuracy"),
    )  # fmt: skip
    return figure


def effects_figure(results: Sequence[RunResult], reference: str = evidence.REFERENCE) -> go.Figure:
    """The paired effects as a forest plot: reference − row per seed, mean and 95 % CI, against the zero line."""
    rows = evidence.effects([r.to_json() for r in results], reference)
    names = [e["comparison"] for e in rows]
    means = [100 * e["effect"].interval.mean for e in rows]
    figure = go.Figure(
        go.Scatter(
            x=means, y=names, mode="markers", marker=dict(size=10, color="#1f77b4"), name="mean of paired differences",
            error_x=dict(type="data", symmetric=False, array=[100 * e["effect"].interval.high - m for e, m in zip(rows, means, strict=True)],
                         arrayminus=[m - 100 * e["effect"].interval.low for e, m in zip(rows, means, strict=True)]),
            text=[f"{e['effect'].agree}/{e['effect'].interval.n} seeds agree" for e in rows],
        )
    )  # fmt: skip
    return forest_layout(figure, f"Paired effects on ACC: {reference} − row, per seed (95% CI)", len(rows), 40, 260)


def forest_layout(figure: go.Figure, title: str, rows: int, row_height: int, left: int) -> go.Figure:
    """A forest plot's frame: the zero line, the first row at the top, a row's height and room for its names."""
    figure.add_vline(x=0, line=dict(color="grey", dash="dash"))
    figure.update_layout(title=title, xaxis_title="points of accuracy", yaxis=dict(autorange="reversed"),
                         height=120 + row_height * rows, margin=dict(l=left))  # fmt: skip
    return figure


# What each column of `results_table` means (metrics.py has the formulas); the report prints it under the table.
METRIC_DEFINITIONS = {
    "ACC (task mean)": "final accuracy, the unweighted mean over tasks of each task's accuracy",
    "ACC (pooled)": "final accuracy on all seen test images together (the authors' and Avalanche's)",
    "BWT": "mean over old tasks of final minus just-learned accuracy",
    "forgetting (max)": "mean over old tasks of best earlier minus final accuracy (Chaudhry et al.)",
    "forgetting (since learned)": "mean over old tasks of just-learned minus final accuracy (Avalanche's)",
}


def results_table(results: Sequence[RunResult]) -> list[dict]:
    """One row per run: the numbers the CLI prints and the report shows (columns: METRIC_DEFINITIONS)."""
    return [
        {
            "method": r.label,
            "ACC (task mean)": round(r.acc_task_mean, 4),
            "ACC (pooled)": round(r.acc_pooled, 4),
            "BWT": round(r.bwt, 4),
            "forgetting (max)": round(r.forgetting, 4),
            "forgetting (since learned)": round(r.forgetting_since_learned, 4),
            "bytes carried": r.state_bytes[-1],
            "Θ(1)?": "yes" if len(set(r.state_bytes)) == 1 else "no",  # constant across tasks, as measured
            "seconds": round(r.seconds, 1),
        }  # fmt: skip
        for r in results
    ]


def format_table(rows: Sequence[dict]) -> str:
    """A plain-text table with aligned columns."""
    if not rows:
        return ""
    columns = list(rows[0])
    cells = [[str(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def html_table(rows: Sequence[dict], css_class: str = "") -> str:
    """Rows of dicts as an HTML table (the report's, and the widgets' results table)."""
    if not rows:
        return f'<table class="{html.escape(css_class)}"></table>'
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in rows
    )
    return f'<table class="{html.escape(css_class)}"><tr>{header}</tr>{body}</table>'


def write_report(
    results: Sequence[RunResult], path: str | Path, *, command: str = "", margin: float = stats.MARGIN
) -> Path:
    """One self-contained HTML file (plotly.js inline, no CDN): the summary over seeds and the paired effects,
    the comparison and effects figures, and each run's accuracy matrix (the first seed's, per row)."""
    path = Path(path)
    runs = [r.to_json() for r in results]
    summary = evidence.summarize(runs)
    n = max((row["n"] for row in summary), default=0)
    tables = f"<h2>Summary: mean ± 95% t-interval over {n} seed(s)</h2>" + html_table(
        evidence.summary_table(summary)
    )
    paired = evidence.effects(runs)
    if paired:
        tables += (
            "<h2>Paired effects (holistic − row, per seed)</h2><p>p: the paired t-test of no difference; verdict "
            f"(Holm): after Holm's adjustment over the {len(paired)} comparisons; equivalence tested at "
            f"{stats.margin_words(margin)} (two one-sided tests).</p>" + html_table(evidence.effects_table(paired, margin))
        )
    first = {}
    for r in results:
        first.setdefault(r.label, r)
    figures = [comparison_figure(results), *([effects_figure(results)] if paired else [])]
    figures += [accuracy_matrix_figure(r) for r in first.values()]
    definitions = "".join(
        f"<dt>{html.escape(name)}</dt><dd>{html.escape(meaning)}</dd>"
        for name, meaning in METRIC_DEFINITIONS.items()
    )
    parts = [f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figures)]
    per_run = "<h2>Every run</h2>" + html_table(
        [{"seed": r.seed, **row} for r, row in zip(results, results_table(results), strict=True)]
    )
    stream = html.escape(results[0].stream) if results else ""
    document = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>holomerge_lab: {stream}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head>
<body><h1>holomerge_lab: {stream}</h1>
<p>Reproduce: <code>{html.escape(command)}</code></p>
{tables}
<dl>{definitions}</dl>
{"".join(parts)}
{per_run}
</body></html>
"""
    return atomic_write_text(path, document)


def accuracy_matrices_figure(results: Sequence[RunResult], columns: int = 4) -> go.Figure:
    """Every run's accuracy matrix side by side, one colour scale: where forgetting happens, per method."""
    rows = -(-len(results) // columns)
    figure = make_subplots(
        rows=rows, cols=columns, subplot_titles=[f"{r.label}: {r.acc_task_mean:.2f}" for r in results]
    )
    for i, r in enumerate(results):
        n = len(r.acc_matrix)
        figure.add_trace(
            go.Heatmap(
                z=r.acc_matrix.tolist(), x=[f"T{j + 1}" for j in range(n)], y=[f"after {j + 1}" for j in range(n)],
                zmin=0, zmax=1, colorscale="Viridis", showscale=i == 0, colorbar=dict(title="acc"),
            ),
            row=i // columns + 1, col=i % columns + 1,
        )  # fmt: skip
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(
        height=260 * rows + 60, title="Accuracy matrices (row: after task i, column: task j)"
    )
    return figure


def state_bytes_figure(results: Sequence[RunResult]) -> go.Figure:
    """Bytes each method carries from one task to the next (θ0 not counted): flat lines are Θ(1) in T. Methods that
    carry exactly the same bytes share one line, its legend naming them all (else most lines hide under others)."""
    groups: dict[tuple, list[str]] = {}
    for r in results:
        groups.setdefault(tuple(r.state_bytes), []).append(r.label)
    figure = go.Figure(
        [go.Scatter(x=list(range(1, len(b) + 1)), y=list(b), mode="lines+markers", name=", ".join(names),
                    line=dict(color=COLOURS[i % len(COLOURS)]), marker=dict(symbol=SYMBOLS[i % len(SYMBOLS)]))
         for i, (b, names) in enumerate(groups.items())]
    )  # fmt: skip
    stream = f" on {results[0].stream}, seed {results[0].seed}" if results else ""
    figure.update_layout(title=f"Memory carried between tasks{stream}", xaxis_title="after task",
                         yaxis=dict(title="bytes carried (log scale)", type="log"), legend=dict(title="methods"))  # fmt: skip
    return figure


COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")  # one per line
SYMBOLS = ("circle", "square", "diamond", "x", "triangle-up", "cross", "star", "hexagon")


def alpha_curve_figure(curve: AlphaCurve) -> go.Figure:
    """Accuracy of the two-task merge against α: per task (thin) and on both (thick), per merge rule."""
    figure = go.Figure()
    for (rule, joint), dash in zip(curve.joint_accuracy.items(), ("solid", "dash"), strict=False):
        figure.add_scatter(x=curve.alphas, y=joint, name=f"{rule}: both tasks", line=dict(width=3, dash=dash))
        for j in range(2):
            figure.add_scatter(
                x=curve.alphas, y=[a[j] for a in curve.task_accuracy[rule]], name=f"{rule}: task {j + 1}",
                line=dict(width=1, dash=dash), opacity=0.7,
            )  # fmt: skip
    figure.update_layout(
        title="Merging task 1 and task 2: accuracy against α (α = 0 keeps task 1's model, α = 1 task 2's)",
        xaxis_title="α (weight of task 2)", yaxis=dict(title="accuracy", range=[0, 1.05]),
    )  # fmt: skip
    return figure


def tsne_figure(
    coords: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    title: str = "",
    class_names: Sequence[str] | None = None,
) -> go.Figure:
    """Points of a joint t-SNE; names are "model/data" (e.g. "merged/old"): colour = model, symbol = data. With
    `class_names`, each class is named on the page at the centre of its points (all sets), and in the hover. The
    merged model's points are drawn last, as open markers over the filled, translucent aligned ones: where alignment
    barely moved a point the two coincide and both stay visible."""
    colours = {"previous": "#1f77b4", "merged": "#d62728", "aligned": "#2ca02c"}
    symbols = {"old": "circle", "new": "x"}
    layer = {"previous": 0, "aligned": 1, "merged": 2}  # drawing order: merged on top
    name_of = (lambda c: class_names[int(c)]) if class_names is not None else (lambda c: f"class {c}")
    figure = go.Figure()
    for name in sorted(coords, key=lambda n: layer.get(n.split("/")[0], 0)):
        xy, (model, data) = coords[name], name.split("/")
        symbol = symbols.get(data, "circle") + ("-open" if model == "merged" else "")
        figure.add_scatter(
            x=xy[:, 0].tolist(), y=xy[:, 1].tolist(), mode="markers", name=f"{model} on {data} data",
            text=[name_of(c) for c in labels[name]], opacity=0.9 if model == "merged" else 0.45,
            marker=dict(color=colours.get(model), symbol=symbol, size=8 if model == "merged" else 6),
        )  # fmt: skip
    if class_names is not None:
        points = np.concatenate(list(coords.values()))
        classes = np.concatenate([labels[k] for k in coords])
        for c in np.unique(classes):
            x, y = points[classes == c].mean(0)
            figure.add_annotation(x=float(x), y=float(y), text=f"<b>{name_of(c)}</b>", showarrow=False,
                                  bgcolor="rgba(255,255,255,0.7)")  # fmt: skip
    figure.update_layout(title=title, xaxis=dict(showticklabels=False, title="t-SNE axis 1 (no units)"),
                         yaxis=dict(showticklabels=False, title="t-SNE axis 2 (no units)"))  # fmt: skip
    return figure


def discrepancy_figure(steps: Sequence[AlignmentStep], loss: str = "mse") -> go.Figure:
    """Feature discrepancy to the teacher at every merge, before and after alignment, on old and new data."""
    tasks = [s.task + 1 for s in steps]
    figure = go.Figure()
    for data, dash in (("old", "solid"), ("new", "dot")):
        for model, colour in (("merged", "#d62728"), ("aligned", "#2ca02c")):
            figure.add_scatter(
                x=tasks, y=[s.discrepancy[data][model][loss] for s in steps], mode="lines+markers",
                name=f"{model} on {data} data", line=dict(color=colour, dash=dash),
            )  # fmt: skip
    figure.update_layout(
        title=f"Feature discrepancy to the teacher ({loss}) after each merge", xaxis_title="task merged",
        yaxis_title=loss,
    )  # fmt: skip
    return figure


def tangent_standard_figure(results: Sequence[RunResult]) -> go.Figure:
    """Tangent against standard fine-tuning per stream: plasticity (mean R[t][t]) and final ACC, each the mean over
    seeds with its 95 % interval (error bars) and every seed's value (dots), on a 0–1 axis so no difference is
    blown up. Only runs with the latest run's settings (all but stream, pre and seed) are drawn: a press with other
    settings starts a fresh picture instead of mixing with the old one."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("plasticity: mean of R[t][t]", "final ACC"))
    if not results:
        return figure
    fixed = {k: v for k, v in results[-1].config.items() if k not in ("seed", "stream", "pre")}
    current = [r for r in results if all(r.config.get(k) == v for k, v in fixed.items())]
    streams = list(dict.fromkeys(r.stream for r in current))
    seeds = sorted({r.seed for r in current})
    ways = ((True, "tangent", "#1f77b4"), (False, "standard", "#d62728"))
    for col, value in ((1, plasticity), (2, lambda r: r.acc)):
        for pre, way, colour in ways:
            per = {s: by_seed(current, value, stream=s, pre=pre) for s in streams}
            shown = [s for s in streams if per[s]]
            ivs = [stats.interval(list(per[s].values())) for s in shown]
            x = [f"{s}<br>{way}" for s in shown]
            figure.add_bar(
                x=x, y=[iv.mean for iv in ivs], name=way, marker_color=colour, legendgroup=way, showlegend=col == 1,
                error_y=dict(type="data", array=[iv.half_width for iv in ivs], visible=True), row=1, col=col,
            )  # fmt: skip
            figure.add_scatter(
                x=[f"{s}<br>{way}" for s in shown for _ in per[s]], y=[v for s in shown for v in per[s].values()],
                mode="markers", marker=dict(color="rgba(0,0,0,0.5)", size=6), name="each seed",
                legendgroup="seed", showlegend=col == 1 and pre, row=1, col=col,
            )  # fmt: skip
    figure.update_yaxes(range=[0, 1.05], title_text="accuracy")
    order = [f"{s}<br>{way}" for s in streams for _, way, _ in ways]  # each stream's two ways side by side
    figure.update_xaxes(title_text="stream, fine-tuning", categoryorder="array", categoryarray=order)
    spread = "mean ± 95 % CI over seeds" if len(seeds) > 1 else "one seed: a preview"
    figure.update_layout(
        title=f"Holistic method, tangent vs standard fine-tuning on {', '.join(streams)}<br>seeds {seeds} ({spread})",
        margin=dict(t=90),
    )  # fmt: skip
    return figure


def seed_curves_figure(
    curves: Mapping[str, Mapping[int, Sequence[float]]], *, title: str, xaxis_title: str, yaxis_title: str,
    x: Sequence[float] | None = None, zero_line: bool = False,
) -> go.Figure:  # fmt: skip
    """One line per setting (`curves`: name -> seed -> values at each x): at each x the mean over seeds with its
    95 % interval as error bars. Each line has its own dash and marker, so two lines that coincide both stay
    visible. `zero_line` draws y = 0 (for a curve of paired differences)."""
    dashes, symbols = ("solid", "dash", "dot", "dashdot"), ("circle", "x", "square", "diamond")
    figure = go.Figure()
    for i, (name, by_seed_values) in enumerate(curves.items()):
        values = np.array([list(v) for v in by_seed_values.values()], dtype=float)  # [seeds, x]
        ivs = [stats.interval(values[:, k].tolist()) for k in range(values.shape[1])]
        figure.add_scatter(
            x=list(x) if x is not None else list(range(values.shape[1])), y=[iv.mean for iv in ivs],
            mode="lines+markers", name=f"{name} ({values.shape[0]} seeds)",
            line=dict(dash=dashes[i % len(dashes)], width=3 if i == 0 else 2),
            marker=dict(symbol=symbols[i % len(symbols)], size=9 if i == 0 else 7),
            error_y=dict(type="data", array=[iv.half_width for iv in ivs], visible=values.shape[0] > 1),
        )  # fmt: skip
    if zero_line:
        figure.add_hline(y=0, line=dict(color="grey", dash="dot"))
    figure.update_layout(title=title, xaxis_title=xaxis_title, yaxis_title=yaxis_title, margin=dict(t=90))
    return figure


def stream_images(stream: TaskStream, per_task: int = 6) -> tuple[np.ndarray, list[str]]:
    """A mosaic of the stream's training images: one row per task, its first `per_task` images side by side
    (grey images as they are stored, 0–255), and each row's name (the task and its classes)."""
    rows, names = [], []
    for task in stream.tasks:
        images = task.train_images[:per_task].numpy()
        if images.ndim == 4:  # colour [N, C, H, W] (folder streams): show the mean over channels
            images = images.mean(1)
        pad = np.zeros((per_task - len(images), *images.shape[1:]), dtype=images.dtype)
        rows.append(np.concatenate(list(np.concatenate([images, pad])), axis=1))
        names.append(
            task.name if stream.setting == "dil" else "/".join(stream.class_names[c] for c in task.classes)
        )
    return np.concatenate(rows, axis=0), names


def stream_images_figure(stream: TaskStream, per_task: int = 6) -> go.Figure:
    """`stream_images` drawn as one grey heat map, each row of tasks labelled."""
    mosaic, names = stream_images(stream, per_task)
    height = mosaic.shape[0] // len(names)
    figure = go.Figure(go.Heatmap(z=mosaic[::-1], colorscale="gray", showscale=False, hoverinfo="skip"))
    figure.update_yaxes(tickvals=[mosaic.shape[0] - height * (i + 0.5) for i in range(len(names))],
                        ticktext=names, scaleanchor="x", automargin=True,  # long names: else cut off at the margin
                        title="task (its classes)")  # fmt: skip
    figure.update_xaxes(showticklabels=False, title=f"its first {per_task} training images")
    figure.update_layout(
        title=f"{stream.name}: the first training images of each task", height=120 + 60 * len(names),
        plot_bgcolor="white",
    )
    return figure


# The holistic loop, drawn: box name -> (x centre, y centre, text); arrows: (from, to, label)
LOOP_BOXES = {
    "start": (0.0, 1.0, "θ̄(t−1), F̄(t−1)<br>carried from task t−1"),
    "pre": (1.0, 1.0, "<b>1 fine-tune</b><br>tangent f_lin around θ0,<br>from θ̄(t−1) → θ(t), v(t)"),
    "during": (2.0, 1.0, "<b>2 merge</b><br>weighted by Adam's v<br>→ θ̄(t), F̄(t)"),
    "post": (3.0, 1.0, "<b>3 align</b><br>bias of θ̄(t) towards<br>θ̄(t−1)'s features"),
    "end": (4.0, 1.0, "θ̄(t), F̄(t)<br>served, carried on"),
    "data": (1.0, 0.0, "task t: images + labels"),
    "images": (3.0, 0.0, "task t: images, no labels"),
    "eval": (4.0, 0.0, "evaluate on tasks 1…t<br>→ row t of R"),
}
LOOP_ARROWS = (
    ("start", "pre", ""), ("pre", "during", ""), ("during", "post", ""), ("post", "end", ""),
    ("data", "pre", ""), ("images", "post", ""), ("end", "eval", ""), ("end", "start", "next task: t ← t+1"),
)  # fmt: skip


def loop_diagram() -> go.Figure:
    """One pass of the holistic loop for task t as boxes and arrows (LOOP_BOXES, LOOP_ARROWS): what is carried in,
    the three stages in order, what each stage reads, and what is carried out. Drawn, not typed as ASCII art, so
    it reads the same in every front end and in the book."""
    half_w, half_h = 0.42, 0.3
    figure = go.Figure()
    for name, (x, y, text) in LOOP_BOXES.items():
        stage = name in ("pre", "during", "post")
        figure.add_shape(type="rect", x0=x - half_w, x1=x + half_w, y0=y - half_h, y1=y + half_h,
                         line=dict(color="#1f77b4" if stage else "grey"),
                         fillcolor="rgba(31,119,180,0.12)" if stage else "rgba(0,0,0,0.03)")  # fmt: skip
        figure.add_annotation(x=x, y=y, text=text, showarrow=False, font=dict(size=12))
    for source, target, label in LOOP_ARROWS:
        (x0, y0, _), (x1, y1, _) = LOOP_BOXES[source], LOOP_BOXES[target]
        if label:  # the loop back: over the top of the row
            figure.add_shape(type="path", path=f"M {x0},{y0 + half_h} C {x0},{y0 + 1.0} {x1},{y1 + 1.0} {x1},{y1 + half_h}",
                             line=dict(color="grey", dash="dash"))  # fmt: skip
            figure.add_annotation(x=(x0 + x1) / 2, y=y0 + 0.82, text=label, showarrow=False, font=dict(color="grey"),
                                  bgcolor="white")  # fmt: skip
            figure.add_annotation(x=x1, y=y1 + half_h, ax=x1, ay=y1 + half_h + 0.2, xref="x", yref="y", axref="x",
                                  ayref="y", showarrow=True, arrowhead=2, arrowcolor="grey", text="")  # fmt: skip
            continue
        dx, dy = x1 - x0, y1 - y0
        start = (x0 + half_w * (dx > 0) - half_w * (dx < 0), y0 + half_h * (dy > 0) - half_h * (dy < 0))
        end = (x1 - half_w * (dx > 0) + half_w * (dx < 0), y1 - half_h * (dy > 0) + half_h * (dy < 0))
        figure.add_annotation(x=end[0], y=end[1], ax=start[0], ay=start[1], xref="x", yref="y", axref="x",
                              ayref="y", showarrow=True, arrowhead=2, arrowsize=1.2, text="")  # fmt: skip
    figure.update_xaxes(visible=False, range=[-0.5, 4.5])
    figure.update_yaxes(visible=False, range=[-0.45, 2.0])
    figure.update_layout(title="One pass of the loop, for each task t = 1 … T (nothing else is kept)",
                         height=340, width=980, margin=dict(l=10, r=10, t=50, b=10), plot_bgcolor="white")  # fmt: skip
    return figure

