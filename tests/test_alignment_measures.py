"""Alignment's per-seed measures against the trace's own numbers, on a real (tiny) run and on hand-made steps."""

import pytest
from conftest import small_config

from holomerge_lab.analysis.alignment_measures import (
    accuracy_sides,
    discrepancy_cut,
    over_merges,
)
from holomerge_lab.analysis.probes import AlignmentStep, alignment_trace
from holomerge_lab.errors import UserError


def _step(task, merged, aligned, acc_merged, acc_aligned):
    d = {data: {"merged": {"mse": merged}, "aligned": {"mse": aligned}} for data in ("old", "new")}
    return AlignmentStep(task, d, {"merged": acc_merged, "aligned": acc_aligned})


def test_measures_are_means_over_merges_per_seed():
    by_seed = {0: [_step(1, 2.0, 1.0, 0.5, 0.6), _step(2, 4.0, 4.0, 0.7, 0.6)], 3: [_step(1, 1.0, 2.0, 0.4, 0.4)]}
    after, before = accuracy_sides(by_seed)
    assert after == pytest.approx({0: 0.6, 3: 0.4}) and before == pytest.approx({0: 0.6, 3: 0.4})
    assert discrepancy_cut(by_seed, "new", "mse") == pytest.approx({0: (0.5 + 0.0) / 2, 3: -1.0})
    with pytest.raises(UserError, match="no merge"):
        over_merges({0: []}, lambda s: 0.0)


def test_measures_read_a_real_trace(small_prepared):
    steps = alignment_trace(small_config(), small_prepared)
    after, before = accuracy_sides({7: steps})
    assert after[7] == pytest.approx(sum(s.accuracy["aligned"] for s in steps) / len(steps))
    assert before[7] == pytest.approx(sum(s.accuracy["merged"] for s in steps) / len(steps))
    cut = discrepancy_cut({7: steps}, "old", "cosine")[7]
    assert cut == pytest.approx(sum(s.reduction("old", "cosine") for s in steps) / len(steps))


def test_sweep_sides_pair_a_setting_with_no_alignment_by_seed():
    from holomerge_lab.analysis.alignment_measures import sweep_sides

    runs = [{"candidate": s, "method": m, "seed": seed, "acc": acc}
            for s, m, seed, acc in [("a", "no alignment", 0, 0.5), ("a", "proj", 0, 0.4), ("a", "proj", 1, 0.3),
                                    ("a", "no alignment", 1, 0.6), ("b", "proj", 0, 0.9)]]  # fmt: skip
    assert sweep_sides(runs, "a", "proj") == ({0: 0.4, 1: 0.3}, {0: 0.5, 1: 0.6})
    with pytest.raises(UserError, match="holds no run of 'bias'"):
        sweep_sides(runs, "a", "bias")
