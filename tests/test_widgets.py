"""The panels, driven from Python as a reader would drive them in a browser: set values, click, read the table."""

import dataclasses

import numpy as np
import pytest
from conftest import small_config

from holomerge_lab.experiment.pipeline import METHODS, RunConfig, run
from holomerge_lab.tour import shipped
from holomerge_lab.tour.widgets import CONTROLS, Panel, control, stage_combinations


def test_every_control_sets_its_own_config_field():
    config = small_config(alpha=0.5, seed=0, center=False, trainable_from=15, lr=1e-3)
    panel = Panel(config, [f for f in CONTROLS if f != "stream"])
    new = {"pre": False, "during": False, "post": False, "center": True, "method": "average", "tasks": 2,
           "train_per_task": 60, "test_per_task": 40, "steps": 3, "alpha": 0.25, "align_loss": "cosine",
           "align_parameter": "projection", "align_teacher": "current", "align_steps": 7, "align_lr": 1e-4,
           "lr": 1e-2, "trainable_from": 14, "seed": 4}  # fmt: skip
    for field, value in new.items():
        panel.controls[field].value = value
    assert dataclasses.replace(config, **new) == panel.config()
    for field, widget in panel.controls.items():
        assert widget.description == field and f"hm-{field}" in widget._dom_classes
    assert set(control("method", config).options) == set(METHODS)


def test_run_adds_a_row_and_redraws_and_matches_the_pipeline(small_prepared):
    panel = Panel(small_config(), ["pre", "during", "post"], progress=False)
    panel.click("Run")
    assert panel.error is None and len(panel.results) == 1
    first = panel.figures[0].to_json()
    assert panel.table.value.count("<tr>") == 2 and "hm-results" in panel.table._dom_classes
    reference = run(small_config(), small_prepared, progress=False)
    np.testing.assert_allclose(panel.results[0].acc_matrix, reference.acc_matrix, atol=1e-6)
    panel.controls["pre"].value = False  # tick a stage off, press Run again
    panel.buttons["Run"].click()
    assert [r.label for r in panel.results] == ["holistic", "holistic −pre"]
    assert panel.table.value.count("<tr>") == 3 and panel.figures[0].to_json() != first
    assert panel.bar.value == panel.bar.max == 1 and not panel.buttons["Run"].disabled


def test_a_click_during_a_run_is_ignored():
    calls = []

    def execute(config, prepared, progress):
        calls.append(config)
        panel.buttons["Run"].click()  # a second press arrives while the first run is going on
        assert panel.buttons["Run"].disabled
        return run(config, prepared, progress=False)

    panel = Panel(small_config(tasks=2), execute=execute, progress=False)
    panel.click()
    assert len(calls) == 1 and len(panel.results) == 1 and not panel.running


def test_a_failing_run_shows_its_error_and_the_panel_stays_usable():
    panel = Panel(small_config(tasks=2), ["train_per_task"], progress=False)
    panel.controls["train_per_task"].value = 2000  # the 8×8 digits hold far fewer images per task
    panel.click()
    assert panel.error and "error" in panel.status.value and panel.results == []
    assert not panel.buttons["Run"].disabled and not panel.running
    panel.controls["train_per_task"].value = 60
    panel.click()
    assert panel.error is None and len(panel.results) == 1


def test_plans_run_every_config_with_a_progress_bar():
    combos = stage_combinations(RunConfig())
    assert len({c.label for c in combos}) == 8 and combos[0].label == "holistic"
    panel = Panel(small_config(tasks=2), plans={"two": lambda c: stage_combinations(c)[:2]}, progress=False)
    panel.click("two")
    assert [r.label for r in panel.results] == ["holistic", "holistic −post"]
    assert panel.bar.value == panel.bar.max == 2 and panel.bar.description == "2/2"


def test_a_seed_count_runs_every_config_on_that_many_seeds_and_shows_intervals():
    panel = Panel(small_config(tasks=2, seed=3), ["post"], progress=False, seeds=2)
    assert "hm-seeds" in panel.seeds._dom_classes
    panel.click()
    assert [(r.label, r.seed) for r in panel.results] == [("holistic", 3), ("holistic", 4)]
    assert panel.table.value.count("<tr>") == 2 and "±" in panel.table.value  # one row: 2 seeds
    panel.controls["post"].value = False
    panel.seeds.value = 1
    panel.click()
    rows = panel.rows(panel.results)
    assert [(row["#"], row["method"], row["n"]) for row in rows] == [
        (1, "holistic", 2),
        (2, "holistic −post", 1),
    ]
    bar = panel.figures[0].data[0]
    assert list(bar.x) == ["#1 holistic", "#2 holistic −post"] and bar.error_y.visible
    separate = [run(small_config(tasks=2, seed=s), progress=False) for s in (3, 4)]
    np.testing.assert_allclose(panel.results[1].acc_matrix, separate[1].acc_matrix, atol=1e-6)


def test_the_tasks_slider_stops_at_what_the_stream_holds_and_follows_the_stream():
    from holomerge_lab.data import FOLDER_STREAMS, MAX_DOMAINS, build_stream, max_tasks

    panel = Panel(small_config(tasks=2), ["stream", "tasks"], progress=False)
    assert panel.controls["tasks"].max == len(build_stream("split-digits", train_per_task=1, test_per_task=1).tasks)
    assert not set(FOLDER_STREAMS) & set(panel.controls["stream"].options)  # no data root: no folder streams
    panel.controls["stream"].value = "rotated-mnist"
    assert max_tasks("rotated-mnist") == MAX_DOMAINS and panel.controls["tasks"].max == 20
    panel.controls["stream"].value = "split-animal"
    assert panel.controls["tasks"].max == 5 and panel.controls["tasks"].value <= 5


def test_show_in_sets_the_figures_and_text_on_the_output_itself():
    """What the front end draws is the widget's `outputs`: plotly's own JSON of each figure (no capture involved)."""
    import json

    import ipywidgets as W
    import plotly.graph_objects as go
    import plotly.io as pio

    from holomerge_lab.tour.widgets import show_in

    pio.renderers.default = "plotly_mimetype"
    figure = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    output = W.Output()
    show_in(output, "old")
    show_in(output, figure, "a note")
    drawn, note = output.outputs
    shown = drawn["data"]["application/vnd.plotly.v1+json"]
    assert json.loads(pio.to_json(shown)) == json.loads(pio.to_json(figure.to_dict()))
    assert note == {"output_type": "stream", "name": "stdout", "text": "a note\n"}


def test_a_press_on_three_seeds_shows_its_paired_effects_with_holm_verdicts():
    """holistic against two rows on seeds 0-2: one clearly lower, one within a hair of it; both verdict columns."""
    from holomerge_lab.experiment.pipeline import RunResult
    from holomerge_lab.tour import widgets

    def result(label, seed, acc):
        return RunResult(method=label.split()[0], label=label, stream="split-digits", backbone="effnet-lite0",
                         stages={}, seed=seed, acc_matrix=np.array([[acc]]), joint_accuracy=[acc], state_bytes=[8],
                         seconds=1.0)  # fmt: skip

    press = [result("holistic", s, 0.80 + 0.01 * s) for s in range(3)]
    press += [result("average", s, 0.70 + 0.01 * s + 0.001 * (s % 2)) for s in range(3)]
    press += [result("holistic −post", s, 0.80 + 0.01 * s + 0.0005 * (s - 1)) for s in range(3)]
    html = widgets.effects_html(press)
    assert "verdict (Holm)" in html and "holistic − average" in html and "higher" in html
    assert "equivalent within ±1 point" in html  # the alignment row differs by ±0.05 points
    assert widgets.effects_html(press[:2] + press[3:5]) == ""  # two seeds: no verdicts to show


@pytest.mark.parametrize("stream", ["split-animal", "split-mnist-fashion-animal", "rotated-mnist", "split-digits"])
def test_every_control_shows_its_configs_value(stream):
    """The stream dropdown once showed split-mnist for split-animal (its options were set after its value)."""
    config = RunConfig(stream=stream, tasks=3, train_per_task=100, test_per_task=40, steps=30, lr=3e-4, alpha=0.4,
                       align_steps=5, align_lr=1e-3, trainable_from=14, seed=3).resolve()  # fmt: skip
    for field in CONTROLS:
        assert control(field, config).value == getattr(config, field), field


def test_a_recorded_press_is_answered_from_the_bundle_and_reruns_live_on_request(tmp_path, monkeypatch):
    """A panel's press whose runs the bundle holds is shown from them (nothing runs); any other press, a ticked
    "rerun live" box, or a damaged bundle file runs live, and a live rerun gives the recorded numbers."""
    monkeypatch.setenv("HOLOMERGE_CACHE", str(tmp_path / "cache"))
    bundle = tmp_path / "bundle"
    config = small_config(tasks=2)
    monkeypatch.setenv("HOLOMERGE_RECORD", str(bundle))
    shipped.Results("99_test", folder=bundle).click("press", Panel(config, ["post"], progress=False, seeds=2))
    monkeypatch.delenv("HOLOMERGE_RECORD")
    monkeypatch.setenv("HOLOMERGE_RESULTS", str(bundle))
    panel = Panel(config, ["post"], progress=False, seeds=2)  # its own press: the default lookup finds the runs
    panel.click()
    assert "recorded by" in panel.status.value and panel.bar.value == 0  # shown, nothing ran here
    recorded = list(panel.results)
    assert [r.seed for r in recorded] == [0, 1]
    panel.controls["post"].value = False  # a press the bundle does not hold
    panel.click()
    assert "recorded" not in panel.status.value and panel.bar.value == 2
    panel.controls["post"].value = True
    panel.rerun_live.value = True
    panel.click()
    assert "recorded" not in panel.status.value
    for shown, live in zip(recorded, panel.results[-2:], strict=True):  # JSON keeps float32's shortest repr
        np.testing.assert_allclose(shown.acc_matrix, live.acc_matrix, atol=1e-6)
    panel.rerun_live.value = False
    damaged = bundle / "99_test.json"
    damaged.write_text(damaged.read_text().replace('"seed":0', '"seed":7'))
    panel.click()  # the file fails its digest: its runs are not shown
    assert panel.error is None and "recorded" not in panel.status.value
