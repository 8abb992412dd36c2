"""No silent wrong number: a setting outside its range, a non-finite value, a model that diverged or a prepared run of
other data is refused in one line before it can produce a number that looks right (issue 24, first part).
Each case here passed silently before: a NaN model with exit 0, a preset's steps run for `--epochs`, a [1] tensor
broadcast in a merge, a run labelled with one seed and computed on another's data."""

import contextlib
import json
import math
import re
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
from conftest import small_config
from torch import nn

from holomerge_lab.cli import main
from holomerge_lab.data import load_source
from holomerge_lab.errors import UserError
from holomerge_lab.experiment.config import RunConfig
from holomerge_lab.experiment.pipeline import compare_configs, run
from holomerge_lab.experiment.task_cache import cached_task
from holomerge_lab.method.align import align
from holomerge_lab.method.finetune import fine_tune
from holomerge_lab.method.fisher import diagonal_fisher
from holomerge_lab.method.linearize import forward_fn
from holomerge_lab.method.merging import TaskModel, fisher_weighted_merge, interpolate
from holomerge_lab.models.features import features_dir, features_key, trunk_features
from holomerge_lab.models.zoo import build_backbone

SMALL = ["--stream", "split-digits", "--tasks", "2", "--train-per-task", "30", "--test-per-task", "10", "--quiet"]


def test_epochs_mean_epochs_when_the_preset_has_steps():
    config = RunConfig(epochs=1).resolve()  # the quick preset sets steps=100
    assert config.epochs == 1 and config.steps is None
    assert RunConfig(steps=7, preset="paper", backbone="tiny-clip").resolve().epochs is None  # and the paper preset's epochs yield too


def test_steps_and_epochs_together_are_refused():
    with pytest.raises(UserError, match="steps .* or epochs .* not both"):
        RunConfig(steps=5, epochs=1).resolve()


@pytest.mark.parametrize(
    "field, value",
    [("align_lr", math.inf), ("align_grad_clip", math.nan), ("align_weight_decay", math.inf), ("lr", math.nan),
     ("eps", math.nan), ("scale", math.inf), ("magmax_scale", math.nan), ("alpha", math.nan),
     ("ewc_strength", math.inf), ("grad_clip", math.nan)],
)  # fmt: skip
def test_non_finite_settings_are_refused(field, value):
    with pytest.raises(UserError, match=f"{field} must be a finite number"):
        RunConfig(**{field: value}).resolve()


@pytest.mark.parametrize(
    "field, value",
    [("logit_scale", 0.0), ("logit_scale", -3.0), ("opcm_alpha", 5.0), ("ewc_strength", -1.0), ("beta2", 1.5),
     ("beta2", 1.0), ("seed", -1), ("seed", 2**40), ("align_steps", 0), ("grad_clip", 0.0), ("top_k", 0.0),
     ("fisher_examples", 0), ("alpha", 1.5)],
)  # fmt: skip
def test_settings_out_of_range_are_refused(field, value):
    with pytest.raises(UserError, match=f"{field} must (be in [\\[(].*|be positive|not be negative), got"):
        RunConfig(**{field: value}).resolve()


@pytest.mark.parametrize("flag", [["--lr", "nan"], ["--align-lr", "inf"], ["--align-grad-clip", "nan"]])
def test_a_non_finite_flag_is_one_line_exit_2_and_writes_nothing(flag, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", *SMALL, "--steps", "2", *flag, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "finite" in err and "Traceback" not in err, err
    assert not out.exists()  # no run-settings.json left to block the next, correct run


def test_the_same_method_twice_is_refused_before_any_work():
    with pytest.raises(UserError, match="'zero-shot' is listed 2 times"):
        compare_configs(RunConfig(), ["zero-shot", "average", "zero-shot"])


def _linear():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    return model, {n: p.detach() for n, p in model.named_parameters()}


def test_a_fine_tune_that_ends_non_finite_is_refused():
    """One step at an infinite learning rate: the loss before the step was finite, the parameters after are not."""
    model, theta0 = _linear()
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    with pytest.raises(UserError, match="fine-tuning diverged: .* NaN or infinity; lower the learning rate"):
        fine_tune(forward_fn(model, theta0, tangent=False), theta0, x, y, lambda z: z, steps=1, lr=math.inf)


def test_an_alignment_that_diverges_is_refused():
    model, theta0 = _linear()
    x = torch.randn(16, 4)
    with pytest.raises(UserError, match="alignment diverged.*lower the alignment learning rate"):
        align(forward_fn(model, theta0, tangent=False), theta0, torch.randn(16, 3), x, parameter="bias", steps=3,
              lr=math.inf, batch_size=8)  # fmt: skip


def test_merges_refuse_parameters_of_other_shapes_and_weights_outside_0_1():
    prev, new = {"w": torch.zeros(3)}, {"w": torch.ones(1)}
    with pytest.raises(UserError, match="'w' has shape \\(3,\\) in one and \\(1,\\)"):
        interpolate(prev, new, 0.5)
    with pytest.raises(UserError, match="different parameters"):
        interpolate(prev, {"v": torch.ones(3)}, 0.5)
    with pytest.raises(UserError, match="finite"):
        interpolate(prev, {"w": torch.ones(3)}, math.nan)
    weights = {"w": torch.ones(3)}
    with pytest.raises(UserError, match="alpha must be in \\[0, 1\\]"):
        fisher_weighted_merge(prev, {"w": torch.ones(3)}, weights, weights, 1.5)
    with pytest.raises(UserError, match="do not have its shape"):
        fisher_weighted_merge(prev, {"w": torch.ones(3)}, weights, {"w": torch.ones(1)}, 0.5)


def test_a_fisher_over_no_examples_is_refused():
    model, _ = _linear()
    with pytest.raises(UserError, match="at least one input"):
        diagonal_fisher(model, torch.zeros(0, 4), None, "true")
    with pytest.raises(UserError, match="2 labels for 4 inputs"):
        diagonal_fisher(model, torch.zeros(4, 4), torch.zeros(2, dtype=torch.long), "empirical")


@pytest.mark.parametrize("other", [{"seed": 1}, {"tasks": 2}, {"stream": "split-mnist"}, {"test_per_task": 10}])
def test_a_run_on_a_prepared_run_of_other_data_is_refused(small_prepared, other):
    with pytest.raises(UserError, match="this Prepared was made for other settings .*prepare\\(config\\)"):
        run(small_config(method="zero-shot", **other), small_prepared, progress=False)


def test_a_run_on_its_own_prepared_run_still_runs(small_prepared):
    result = run(small_config(method="zero-shot"), small_prepared, progress=False)
    assert result.acc_matrix.shape == (3, 3)



@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """A real comparison's folder: two methods on two seeds."""
    out = tmp_path_factory.mktemp("compared") / "results"
    assert main(["compare", *SMALL, "--steps", "2", "--methods", "zero-shot", "average", "--seeds", "0", "1",
                 "--out", str(out)]) == 0  # fmt: skip
    return out


def _copy_runs(compared: Path, to: Path) -> Path:
    to.mkdir()
    for path in compared.glob("*-seed*.json"):
        (to / path.name).write_text(path.read_text())
    return to


def _edit(path: Path, **changes) -> None:
    run = json.loads(path.read_text())
    config = changes.pop("config", {})
    run.update(changes)
    run["config"].update(config)
    path.write_text(json.dumps(run))


@pytest.mark.parametrize(
    "change, message",
    [({"stream": "rotated-mnist"}, "stream split-digits in .* rotated-mnist in"),
     ({"config": {"lr": 0.01}}, "lr 0.0001 in .* 0.01 in"),
     ({"seed": 0}, "are both average at seed 0")],
)  # fmt: skip
def test_summarize_refuses_runs_that_are_not_one_comparison(compared, tmp_path, capsys, change, message):
    folder = _copy_runs(compared, tmp_path / "mixed")
    _edit(folder / "average-seed1.json", **change)
    assert main(["summarize", str(folder), "--write"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err) and "Traceback" not in err, err
    assert not (folder / "summary.json").exists()


def test_summarize_of_one_comparison_still_writes(compared, tmp_path):
    folder = _copy_runs(compared, tmp_path / "one")
    assert main(["summarize", str(folder), "--write"]) == 0
    assert json.loads((folder / "summary.json").read_text())["command"].startswith("holomerge-lab summarize")


def test_summarize_on_a_full_disk_leaves_the_old_summary_whole(compared, tmp_path, capsys):
    disk = tmp_path / "small-disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        folder = _copy_runs(compared, disk / "runs")
        old = '{"command": "an earlier summary"}'
        (folder / "summary.json").write_text(old)
        with open(disk / "filler", "wb", buffering=0) as filler:  # fill the disk to its last byte
            with contextlib.suppress(OSError):
                while True:
                    filler.write(b"\0" * 4096)
        assert main(["summarize", str(folder), "--write"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "No space left on device" in err, err
        assert (folder / "summary.json").read_text() == old
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_setting_only_one_method_reads_may_differ_between_rows_not_between_seeds(compared, tmp_path, capsys):
    """TIES's λ (ties_scale) is the TIES row's own: other rows may hold another value, its seeds may not."""
    folder = _copy_runs(compared, tmp_path / "own")
    for path in folder.glob("average-seed*.json"):
        _edit(path, config={"ties_scale": 0.5})
    assert main(["summarize", str(folder)]) == 0
    _edit(folder / "average-seed1.json", config={"ties_scale": 0.7})
    assert main(["summarize", str(folder)]) == 2
    assert "ties_scale 0.5 in average-seed0.json, 0.7 in average-seed1.json" in capsys.readouterr().err


def _tampered(small_prepared, tmp_path, change) -> Path:
    """A run's checkpoints with the newest one edited by `change(state)` and saved again, loadable as ever."""
    folder = tmp_path / "checkpoints"
    run(small_config(), small_prepared, progress=False, checkpoints=folder)
    newest = sorted(folder.glob("task-*.pt"))[-1]
    state = torch.load(newest, weights_only=True)
    change(state)
    torch.save(state, newest)
    return newest


def _wrong_shape(state):
    name = next(iter(state["carried"]["merged"]))
    state["carried"]["merged"][name] = state["carried"]["merged"][name].flatten()[:1]


@pytest.mark.parametrize(
    "change, message",
    [(_wrong_shape, "carried merged .* of shape \\(1,\\), not θ0's"),
     (lambda s: s.update(acc_matrix=torch.zeros(5, 5)), "an accuracy matrix of shape .*5, 5.*not 3 × 3"),
     (lambda s: s.update(task=10), "task index 10 outside a 3-task stream")],
)  # fmt: skip
def test_a_checkpoint_whose_content_is_not_this_runs_is_refused(small_prepared, tmp_path, change, message):
    """Each of these resumed before: to ACC 0.033 on wrong shapes, a 5 × 5 matrix saved as the result, or every
    remaining task skipped and NaN saved as complete."""
    path = _tampered(small_prepared, tmp_path, change)
    with pytest.raises(UserError, match=f"checkpoint {re.escape(str(path))} does not hold what this run saves .*{message}"):
        run(small_config(), small_prepared, progress=False, checkpoints=path.parent, resume=True)


def test_a_data_cache_file_of_another_data_set_is_decoded_again(tmp_path, monkeypatch):
    """Before, a decoded data set copied over another's file was read as that one: "animal" numbers on digits."""
    monkeypatch.setenv("HOLOMERGE_CACHE", str(tmp_path))
    load_source("digits")
    animal = load_source("animal-mnist")
    (tmp_path / "animal-mnist-v2.npz").write_bytes((tmp_path / "digits-v2.npz").read_bytes())
    with pytest.warns(UserWarning, match="holds 'digits' .* not 'animal-mnist'; decoding again"):
        again = load_source("animal-mnist")
    assert torch.equal(again.train_images, animal.train_images) and again.class_names == animal.class_names


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: bytes(len(b))])
def test_a_damaged_data_cache_file_heals(tmp_path, monkeypatch, damage):
    """Before, a truncated file was a traceback (random bytes suggested allow_pickle) until deleted by hand."""
    monkeypatch.setenv("HOLOMERGE_CACHE", str(tmp_path))
    first = load_source("digits")
    path = tmp_path / "digits-v2.npz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.warns(UserWarning, match="unreadable or unverifiable .*decoding digits again"):
        again = load_source("digits")
    assert torch.equal(again.train_images, first.train_images) and torch.equal(again.test_labels, first.test_labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # healed: read back with no warning
        assert torch.equal(load_source("digits").train_images, first.train_images)


def test_swapped_feature_files_are_computed_again(tmp_path, monkeypatch):
    """Before, two tasks' train-feature files swapped were read as each other's (ACC 0.05)."""
    monkeypatch.setenv("HOLOMERGE_CACHE", str(tmp_path))
    backbone = build_backbone("effnet-lite0")
    images = load_source("digits").train_images[:24]
    first, second = images[:12], images[12:]
    a = trunk_features(backbone, first, progress=False)
    b = trunk_features(backbone, second, progress=False)
    path_a, path_b = (features_dir() / f"{features_key(backbone, x)}.npz" for x in (first, second))
    swapped = path_b.read_bytes()
    path_b.write_bytes(path_a.read_bytes())
    path_a.write_bytes(swapped)
    with pytest.warns(UserWarning, match="hold other images' features"):
        again = trunk_features(backbone, first, progress=False)
    torch.testing.assert_close(again, a, rtol=0, atol=0)
    assert not torch.equal(a, b)


def test_a_cached_task_model_of_other_shapes_is_trained_again(tmp_path):
    """Before, a stored task model whose tensors had been cut to size 1 was "reused" and merged."""
    like = {"w": torch.zeros(3), "b": torch.zeros(2)}
    trained = []

    def train():
        trained.append(1)
        return TaskModel({"w": torch.ones(3), "b": torch.ones(2)}, {"w": torch.full((3,), 0.1)}, 5, 0.999), [0.7]

    model, _, hit = cached_task(tmp_path, "k", train, like=like)
    assert not hit and trained == [1]
    assert cached_task(tmp_path, "k", train, like=like)[2] and trained == [1]  # a hit, as before
    path = tmp_path / "k.pt"
    state = torch.load(path, weights_only=True)
    state["params"] = {name: value[:1] for name, value in state["params"].items()}
    torch.save(state, path)
    again, _, hit = cached_task(tmp_path, "k", train, like=like)
    assert not hit and trained == [1, 1] and again.params["w"].shape == (3,)
    (tmp_path / "other.pt").write_bytes(path.read_bytes())  # a whole entry, copied under another key's name
    assert cached_task(tmp_path, "other", train, like=like)[2] is False and trained == [1, 1, 1]
