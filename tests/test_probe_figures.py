"""The figures of notebooks 04, 05 and 07 draw exactly the numbers they are given."""

import numpy as np
import pytest
from conftest import small_config

from holomerge_lab.analysis.probes import AlphaCurve, alignment_trace, step_embedding
from holomerge_lab.experiment.pipeline import run
from holomerge_lab.tour.viz import (
    accuracy_matrices_figure,
    alpha_curve_figure,
    discrepancy_figure,
    html_table,
    state_bytes_figure,
    tsne_figure,
)


def test_alpha_curve_figure_draws_every_rule_and_task():
    curve = AlphaCurve([0.0, 1.0], {"v-weighted": [[1, 0], [0, 1]], "interpolate": [[1, 0], [0.5, 1]]},
                       {"v-weighted": [0.5, 0.5], "interpolate": [0.5, 0.75]})  # fmt: skip
    figure = alpha_curve_figure(curve)
    assert len(figure.data) == 6
    by_name = {t.name: list(t.y) for t in figure.data}
    assert by_name["interpolate: task 1"] == [1, 0.5] and by_name["interpolate: both tasks"] == [0.5, 0.75]


def test_run_figures_and_trace_figures(small_prepared):
    results = [run(small_config(method=m), small_prepared, progress=False) for m in ("average", "holistic")]
    matrices = accuracy_matrices_figure(results)
    assert len(matrices.data) == 2
    np.testing.assert_array_equal(np.array(matrices.data[1].z, dtype=float), results[1].acc_matrix)
    assert [list(t.y) for t in state_bytes_figure(results).data] == [r.state_bytes for r in results]
    steps = alignment_trace(small_config(), small_prepared, keep=(2,))
    lines = {t.name: list(t.y) for t in discrepancy_figure(steps, "cosine").data}
    assert lines["aligned on old data"] == [s.discrepancy["old"]["aligned"]["cosine"] for s in steps]
    coords, labels = step_embedding(steps[1])
    figure = tsne_figure(coords, labels)
    assert len(figure.data) == 6 and sum(len(t.x) for t in figure.data) == sum(
        len(c) for c in coords.values()
    )
    names = small_prepared.stream.class_names
    named = tsne_figure(coords, labels, class_names=names)
    classes = sorted({int(c) for v in labels.values() for c in v})
    assert [a.text for a in named.layout.annotations] == [f"<b>{names[c]}</b>" for c in classes]
    first = next(iter(coords))
    mine = np.concatenate([coords[k] for k in coords])[np.concatenate([labels[k] for k in coords]) == classes[0]]
    assert named.layout.annotations[0].x == pytest.approx(float(mine[:, 0].mean()))
    assert list(named.data[0].text) == [names[int(c)] for c in labels[first]]


def test_html_table_escapes_and_keeps_its_class():
    text = html_table([{"a": "<b>", "b": 1}], "hm-results")
    assert 'class="hm-results"' in text and "&lt;b&gt;" in text and text.count("<tr>") == 2


def test_stream_images_are_the_tasks_first_images_row_by_row():
    from holomerge_lab.data import build_stream
    from holomerge_lab.tour.viz import stream_images, stream_images_figure

    stream = build_stream("split-digits", train_per_task=4, test_per_task=2)
    mosaic, names = stream_images(stream, per_task=3)
    h, w = stream.tasks[0].train_images.shape[1:]
    assert mosaic.shape == (h * len(stream.tasks), w * 3)
    assert np.array_equal(mosaic[h : 2 * h, w : 2 * w], stream.tasks[1].train_images[1].numpy())
    assert names[0] == "/".join(stream.class_names[c] for c in stream.tasks[0].classes)
    figure = stream_images_figure(stream, per_task=3)
    assert np.array_equal(np.asarray(figure.data[0].z), mosaic[::-1])
    assert list(figure.layout.yaxis.ticktext) == names


def test_memory_lines_group_identical_bytes_and_merged_points_sit_on_top(small_prepared):
    """Methods that carry the same bytes share one line named after all of them; in the t-SNE the merged model's
    points are drawn last, open, so the aligned points under them cannot hide them."""
    results = [run(small_config(method=m), small_prepared, progress=False) for m in ("average", "sequential", "holistic")]
    lines = state_bytes_figure(results).data
    assert [t.name for t in lines] == ["average, sequential", "holistic"]
    assert [list(t.y) for t in lines] == [results[0].state_bytes, results[2].state_bytes]
    rng = np.random.default_rng(0)
    names = [f"{m}/{d}" for d in ("old", "new") for m in ("previous", "merged", "aligned")]
    coords = {n: rng.normal(size=(4, 2)) for n in names}
    figure = tsne_figure(coords, {n: np.zeros(4, dtype=int) for n in names})
    drawn = [t.name for t in figure.data]
    assert drawn[-2:] == ["merged on old data", "merged on new data"]
    assert [t.marker.symbol for t in figure.data[-2:]] == ["circle-open", "x-open"]
    assert figure.layout.xaxis.title.text and figure.layout.yaxis.title.text
