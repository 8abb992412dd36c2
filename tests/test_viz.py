"""The figures notebook 00 draws: the loop diagram's boxes and arrows, and titles and labels that fit their figure."""

import pytest
from conftest import small_config

from holomerge_lab.data import build_stream
from holomerge_lab.experiment.pipeline import run
from holomerge_lab.tour import viz


def test_loop_diagram_draws_every_box_and_arrow():
    figure = viz.loop_diagram()
    boxes = [s for s in figure.layout.shapes if s.type == "rect"]
    assert len(boxes) == len(viz.LOOP_BOXES)
    for (x, y, text), box in zip(viz.LOOP_BOXES.values(), boxes, strict=True):
        assert box.x0 < x < box.x1 and box.y0 < y < box.y1
        assert any(a.text == text and (a.x, a.y) == (x, y) for a in figure.layout.annotations)
    arrows = [a for a in figure.layout.annotations if a.showarrow]
    straight = [a for a in viz.LOOP_ARROWS if not a[2]]
    assert len(arrows) == len(straight) + 1  # the loop back is a dashed path with its own arrow head
    for (source, target, _), arrow in zip(straight, arrows, strict=False):
        (x0, y0, _), (x1, y1, _) = viz.LOOP_BOXES[source], viz.LOOP_BOXES[target]
        assert (arrow.x - arrow.ax) * (x1 - x0) >= 0 and (arrow.y - arrow.ay) * (y1 - y0) >= 0  # points the right way
    assert all(text in str(figure.layout.annotations) for text in ("1 fine-tune", "2 merge", "3 align"))


def test_accuracy_matrix_title_fits_and_axes_are_named(small_prepared):
    result = run(small_config(), small_prepared, progress=False)
    figure = viz.accuracy_matrix_figure(result)
    first_line, second = figure.layout.title.text.split("<br>")
    assert result.stream in first_line and f"seed {result.seed}" in first_line
    assert f"{result.acc_task_mean:.3f}" in second
    assert len(first_line) * 9 < figure.layout.width  # ~9 px a character at the title's size: it is not cut off
    assert figure.layout.xaxis.title.text and figure.layout.yaxis.title.text


def test_stream_images_figure_names_its_rows_in_a_margin_that_grows():
    figure = viz.stream_images_figure(build_stream("split-digits", train_per_task=4, test_per_task=2), per_task=3)
    assert figure.layout.yaxis.automargin and len(figure.layout.yaxis.ticktext) == 5
    assert figure.layout.xaxis.title.text and figure.layout.yaxis.title.text


def test_tangent_standard_figure_has_error_bars_a_zero_based_axis_and_names_stream_and_seeds(small_prepared):
    import dataclasses

    runs = [run(small_config(pre=pre), small_prepared, progress=False) for pre in (True, False)]
    runs += [dataclasses.replace(r, seed=r.seed + 1) for r in runs]
    figure = viz.tangent_standard_figure(runs)
    bars = [t for t in figure.data if t.type == "bar"]
    assert len(bars) == 4 and all(b.error_y.visible for b in bars)  # tangent, standard × plasticity, ACC
    assert "split-digits" in figure.layout.title.text and str(sorted({r.seed for r in runs})) in figure.layout.title.text
    assert figure.layout.yaxis.range[0] == 0 and figure.layout.yaxis2.range[0] == 0
    assert all(a.title.text for a in (figure.layout.xaxis, figure.layout.yaxis, figure.layout.xaxis2))
    other = dataclasses.replace(runs[0], config={**runs[0].config, "lr": 0.5})
    assert len(viz.tangent_standard_figure([*runs, other]).data[0].x) == 1  # other settings: a fresh picture


def test_seed_curves_figure_keeps_coinciding_lines_apart():
    curves = {"on": {0: [0.0, 1.0, 2.0], 1: [0.0, 1.2, 2.2]}, "off": {0: [0.0, 1.0, 2.0], 1: [0.0, 1.2, 2.2]}}
    figure = viz.seed_curves_figure(curves, title="t", xaxis_title="lag", yaxis_title="drift", zero_line=True)
    on, off = figure.data
    assert on.y == off.y and on.line.dash != off.line.dash and on.marker.symbol != off.marker.symbol
    assert on.y[1] == pytest.approx(1.1) and on.error_y.array[1] > 0
    assert figure.layout.xaxis.title.text == "lag" and figure.layout.shapes  # the zero line
