"""The panel's reruns use the disk cache of fine-tuned tasks, and a plan shows its estimated time before it runs."""

import numpy as np
from conftest import small_config

from holomerge_lab.tour.widgets import Panel, fine_tune_steps, stage_combinations


def test_a_rerun_reuses_cached_tasks_and_the_estimate_counts_steps(tmp_path, monkeypatch):
    monkeypatch.setenv("HOLOMERGE_CACHE", str(tmp_path))
    panel = Panel(small_config(tasks=2), ["post"], progress=False)
    assert panel.estimate([panel.config()]) == ""  # nothing measured yet
    panel.click()
    stored = sorted(p.name for p in (tmp_path / "task-models").glob("*.pt"))
    assert len(stored) == 2 and panel.seconds_per_step > 0
    panel.controls["post"].value = False  # with 2 tasks alignment never changes a start point: both reused
    panel.click()
    assert sorted(p.name for p in (tmp_path / "task-models").glob("*.pt")) == stored
    assert [r.label for r in panel.results] == ["holistic", "holistic −post"]
    np.testing.assert_array_equal(panel.results[0].acc_matrix[0], panel.results[1].acc_matrix[0])
    configs = stage_combinations(panel.config())
    assert fine_tune_steps(configs[0]) == 2 * small_config().steps
    seconds = 8 * fine_tune_steps(configs[0]) * panel.seconds_per_step
    assert panel.estimate(configs) == (
        f'<span class="hm-estimate">up to ≈{seconds:.0f} s (cached fine-tuned tasks are skipped)</span>'
    )
