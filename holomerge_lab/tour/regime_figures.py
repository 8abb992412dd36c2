"""The regime map's figures (notebook 09): a stage's paired effect at every grid point, and a mechanism against the
effect across the points. Plain `go.Figure`s, as in `viz`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from ..analysis import regime
from . import viz


def regime_figure(effect_rows: Sequence[Mapping], effect: str, stream: str) -> go.Figure:
    """One stage's paired effect at every grid point of `stream` (analysis.regime.effects rows), grouped by dial:
    the mean with its 95 % interval (thick) and the interval adjusted over the family's points (thin), 0 dashed."""
    rows = [e for e in effect_rows if e["effect"] == effect and e["stream"] == stream]
    names = [f"{e['dial']}: {e['value']}" for e in rows]
    means = [100 * e["mean"] for e in rows]
    figure = go.Figure()
    for key, width, label in (("adjusted_half_width", 1, "adjusted over the points"), ("half_width", 4, "95 %")):
        figure.add_trace(go.Scatter(
            x=means, y=names, mode="markers", name=label, marker=dict(size=9 if width > 1 else 1, color="#1f77b4"),
            error_x=dict(type="data", array=[100 * e[key] for e in rows], thickness=width, width=0 if width > 1 else 6),
            text=[f"{regime.VERDICT_WORDS.get(e['verdict_holm'], e['verdict_holm'])} (Holm p {e['p_holm']:.3f}, "
                  f"{len(e['seeds'])} seeds)" for e in rows],
        ))  # fmt: skip
    return viz.forest_layout(figure, f"{stream}: stage {effect}, on − off per seed (points of final ACC)", len(rows), 32, 300)


def mechanism_figure(
    effect_rows: Sequence[Mapping], means: Mapping[str, float], effect: str, mechanism: str
) -> go.Figure:
    """Each grid point's mean `mechanism` (point -> value, analysis.regime.point_means) against its mean paired
    `effect` with the 95 % interval: does the mechanism track the effect across the grid?"""
    rows = [e for e in effect_rows if e["effect"] == effect and e["point"] in means]
    figure = go.Figure()
    for stream in dict.fromkeys(e["stream"] for e in rows):
        part = [e for e in rows if e["stream"] == stream]
        figure.add_trace(go.Scatter(
            x=[means[e["point"]] for e in part], y=[100 * e["mean"] for e in part], mode="markers", name=stream,
            error_y=dict(type="data", array=[100 * e["half_width"] for e in part]), text=[e["point"] for e in part],
        ))  # fmt: skip
    figure.add_hline(y=0, line=dict(color="grey", dash="dash"))
    figure.update_layout(title=f"stage {effect} against {mechanism}, one point per grid point",
                         xaxis_title=mechanism, yaxis_title=f"stage {effect}: Δ ACC (points)", height=420)  # fmt: skip
    return figure
