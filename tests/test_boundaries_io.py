"""No silent wrong number, second part (issue 24): the shipped bundle verified by content, a device or cache folder the
machine cannot use, messages in the words of the command line, and a property test over the CLI's flags: every
draw ends in exit 0 with finite numbers, or exit 2 with one line and nothing written; never a traceback."""

import contextlib
import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holomerge_lab.cli import main
from holomerge_lab.errors import UserError
from holomerge_lab.tour import shipped

SMALL = ["--stream", "split-digits", "--tasks", "2", "--train-per-task", "30", "--test-per-task", "10", "--quiet"]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _finite(path: Path) -> dict:
    """A result file, refusing any NaN or Infinity token in it."""
    return json.loads(path.read_text(), parse_constant=lambda token: pytest.fail(f"{token} in {path}"))


# --- the shipped bundle ------------------------------------------------------------------------------------------
def test_every_shipped_file_carries_and_matches_its_digests():
    for path in sorted(shipped.BUNDLE.glob("*.json")):
        data = shipped.read_file(path)  # raises on any mismatch
        assert all(entry["sha256"] == shipped.entry_digest(entry) for entry in data["entries"].values()), path


def _bundle_copy(tmp_path: Path) -> Path:
    """The shipped file of notebook 04 (it has entries) in a folder of its own."""
    folder = tmp_path / "bundle"
    folder.mkdir()
    shutil.copy(shipped.BUNDLE / "04_continual_merging.json", folder)
    return folder / "04_continual_merging.json"


def test_an_edited_shipped_value_is_refused_naming_the_file_and_the_entry(tmp_path):
    path = _bundle_copy(tmp_path)
    data = json.loads(path.read_text())
    name = next(iter(data["entries"]))
    text = json.dumps(data["entries"][name]["value"])
    digit = next(c for c in text if c in "123456789")
    data["entries"][name]["value"] = json.loads(text.replace(digit, "0" if digit != "0" else "1", 1))  # one digit
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=f"{path}: entry {name!r} does not match its recorded digest"):
        shipped.Results("04_continual_merging", folder=path.parent)


@pytest.mark.parametrize("drop", ["value", "settings", "sha256", "made_by.command", "entries"])
def test_a_bundle_file_missing_a_key_is_one_line_not_a_key_error(tmp_path, drop):
    path = _bundle_copy(tmp_path)
    data = json.loads(path.read_text())
    if drop == "made_by.command":
        del data["made_by"]["command"]
    elif drop == "entries":
        del data["entries"]
    else:
        del next(iter(data["entries"].values()))[drop]
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="record this notebook again") as raised:
        shipped.Results("04_continual_merging", folder=path.parent)
    assert len(str(raised.value).splitlines()) == 1


def test_a_truncated_bundle_file_names_the_command_that_remakes_it_alone(tmp_path):
    path = _bundle_copy(tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserError) as raised:
        shipped.Results("04_continual_merging", folder=path.parent)
    message = str(raised.value)
    assert f"--out {path.parent} 04`" in message and "remake the bundle" not in message, message


def test_the_shipped_bundle_itself_says_to_restore_the_file_from_git(tmp_path, monkeypatch):
    path = _bundle_copy(tmp_path)
    path.write_text("{")
    monkeypatch.setattr(shipped, "BUNDLE", path.parent)
    with pytest.raises(UserError, match="git checkout -- "):
        shipped.read_file(path)


# --- devices and caches the machine cannot use -------------------------------------------------------------------
@pytest.mark.parametrize("device", ["meta", "cuda", "cuda:7"])
def test_a_device_this_machine_cannot_run_on_is_one_line_before_any_work(device, tmp_path, capsys):
    if device.startswith("cuda") and torch.cuda.is_available() and device == "cuda":
        pytest.skip("this machine has a CUDA GPU")
    out = tmp_path / "out"
    assert main(["run", *SMALL, "--device", device, "--out", str(out)]) == 2
    assert _one_line(capsys).startswith("holomerge-lab: error: --device is ") and not out.exists()


@contextlib.contextmanager
def _tmpfs(folder: Path, options: str):
    folder.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _run_with_cache(cache: Path, out: Path, monkeypatch, capsys) -> tuple[int, list[str]]:
    monkeypatch.setenv("HOLOMERGE_CACHE", str(cache))
    code = main(["run", *SMALL, "--steps", "2", "--out", str(out)])
    return code, capsys.readouterr().err.strip().splitlines()


def test_read_only_feature_and_task_model_caches_warn_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    with _tmpfs(cache / "features", "ro,size=1m"), _tmpfs(cache / "task-models", "ro,size=1m"):
        code, err = _run_with_cache(cache, tmp_path / "out", monkeypatch, capsys)
    assert code == 0, err
    warned = [line for line in err if line.startswith("holomerge-lab: warning: cannot write")]
    assert warned and all("Read-only file system" in w and "HOLOMERGE_CACHE" in w for w in warned), err
    assert {"features", "task-models"} <= {Path(w.split()[4]).parent.name for w in warned}
    assert _finite(tmp_path / "out" / "holistic.json")["acc"] > 0


def test_a_full_cache_disk_warns_and_the_run_still_writes_its_results(tmp_path, monkeypatch, capsys):
    with _tmpfs(tmp_path / "cache", "size=256k") as cache:
        with open(cache / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 4096)
        code, err = _run_with_cache(cache, tmp_path / "out", monkeypatch, capsys)
    assert code == 0, err
    assert any("No space left on device" in line and "going on without caching" in line for line in err), err
    assert math.isfinite(_finite(tmp_path / "out" / "holistic.json")["acc"])


# --- messages in the command line's words -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, expected",
    [(["--tasks", "99"], "--tasks is 99, out of range; choose 1..5"),
     (["--train-per-task", "100000"], "--train-per-task is 100000, out of range"),
     (["--align-steps", "0"], "--align-steps must be positive, got 0"),
     (["--lr", "inf"], "--lr must be a finite number, got inf")],
)  # fmt: skip
def test_a_setting_is_named_by_its_flag(argv, expected, capsys):
    assert main(["run", *SMALL, *argv]) == 2
    assert _one_line(capsys).startswith(f"holomerge-lab: error: {expected}")


def test_all_with_method_names_says_what_all_means(capsys):
    assert main(["compare", *SMALL, "--methods", "all", "zero-shot"]) == 2
    assert "'all' already names every method" in _one_line(capsys)


def test_resume_accepts_the_same_folder_written_relative_and_absolute(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", *SMALL, "--steps", "1", "--method", "zero-shot", "--out", "runs"]) == 0
    capsys.readouterr()
    for result in ("zero-shot.json", "summary.json", "report.html"):  # as if it had been stopped before the end
        (tmp_path / "runs" / result).unlink()
    assert main(["run", "--resume", "runs", "--out", str(tmp_path / "runs"), "--quiet"]) == 0, capsys.readouterr()


def test_a_run_that_fails_after_it_started_leaves_nothing_in_out(tmp_path, capsys):
    """--out on a disk too small for a checkpoint: the run fails after its data was prepared and its settings
    written; the settings go again too, so the folder is left empty and the next run there needs no --force."""
    with _tmpfs(tmp_path / "small", "size=64k") as out:
        assert main(["run", *SMALL, "--steps", "1", "--out", str(out)]) == 2
        assert "No space left on device" in _one_line(capsys) and list(out.iterdir()) == []


# --- a property over the CLI's flags ------------------------------------------------------------------------------
NUMBERS = st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e-4", "0.5", "1", "1.5", "1e30", "x"])
COUNTS = st.sampled_from(["-1", "0", "1", "2", "99", "1.5"])
FLAGS = {
    "--lr": NUMBERS, "--alpha": NUMBERS, "--align-lr": NUMBERS, "--align-grad-clip": NUMBERS,
    "--align-weight-decay": NUMBERS, "--trainable-from": COUNTS, "--order": st.sampled_from(["1,0", "0,0", "a"]),
    "--steps": COUNTS,
    "--tasks": COUNTS, "--batch-size": COUNTS, "--align-steps": COUNTS, "--seed": st.sampled_from(["0", "-3", "1e3",
    str(2**40)]), "--device": st.sampled_from(["cpu", "meta", "cuda", "nope"]), "--epochs": COUNTS,
}  # fmt: skip
COMMANDS = st.one_of(
    st.tuples(st.just("run"), st.sampled_from([[], ["--method", "average"], ["--method", "magic"], ["--no-post"]])),
    st.tuples(st.just("compare"), st.sampled_from([["--methods", "zero-shot", "average"], ["--methods", "all", "ewc"],
                                                   ["--methods", "average", "average"], ["--seeds", "0", "0"]])),
)  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=COMMANDS, chosen=st.dictionaries(st.sampled_from(sorted(FLAGS)), st.just(None), max_size=3), data=st.data())
def test_any_flags_end_in_finite_results_or_one_line_and_nothing_written(command, chosen, data, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("property") / "out"
    flags = [part for flag in chosen for part in (flag, data.draw(FLAGS[flag], label=flag))]
    argv = [command[0], *SMALL, "--steps", "1", "--align-steps", "1", *command[1], *flags, "--out", str(out)]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, argv
    if code == 0:
        files = list(out.glob("*.json"))
        assert files and all(_finite(f) for f in files), argv
    else:
        assert code == 2 and len(err.splitlines()) == 1, (argv, err)
        assert not out.exists(), (argv, sorted(out.rglob("*")))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.sampled_from(["drop-method", "drop-acc", "nan-acc", "stream", "duplicate", "text", "lr"]),
                      max_size=2, unique=True), write=st.booleans())  # fmt: skip
def test_summarize_of_any_folder_is_a_table_or_one_line_and_writes_nothing(edits, write, compared_runs, tmp_path_factory,
                                                                         capsys):  # fmt: skip
    folder = tmp_path_factory.mktemp("summarize")
    for path in compared_runs:
        shutil.copy(path, folder)
    first, second = sorted(folder.glob("*.json"))[:2]
    for edit in sorted(edits, key=lambda e: e == "text"):  # a broken file last: it is read no more
        run = json.loads(first.read_text())
        if edit == "drop-method":
            run.pop("method", None)
        elif edit == "drop-acc":
            run.pop("acc_matrix", None)
        elif edit == "nan-acc":
            run["acc"] = math.nan
        elif edit == "stream":
            run["stream"] = "rotated-mnist"
        elif edit == "lr":
            run["config"]["lr"] = 0.5
        elif edit == "duplicate":
            shutil.copy(second, folder / "copy.json")
        first.write_text("{broken" if edit == "text" else json.dumps(run))
    code = main(["summarize", str(folder), *(["--write"] if write else [])])
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    if code == 0 and write:
        _finite(folder / "summary.json")
    elif code != 0:
        assert code == 2 and len(err.splitlines()) == 1, (edits, err)
        assert not (folder / "summary.json").exists() and not (folder / "report.html").exists()


@pytest.fixture(scope="module")
def compared_runs(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("compared") / "results"
    assert main(["compare", *SMALL, "--steps", "1", "--methods", "zero-shot", "average", "--seeds", "0", "1",
                 "--out", str(out)]) == 0  # fmt: skip
    return sorted(out.glob("*-seed*.json"))
