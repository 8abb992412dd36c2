"""The command line: real runs, and a one-line error with exit code 2 for every bad input."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from holomerge_lab.cli import main

SMALL = ["--stream", "split-digits", "--tasks", "2", "--train-per-task", "30", "--test-per-task", "10",
         "--steps", "3", "--quiet"]  # fmt: skip


def test_run_prints_one_json_object_per_run(capsys):
    assert main(["run", *SMALL, "--method", "holistic", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["method"] == "holistic" and document["stages"] == {
        "pre": True,
        "during": True,
        "post": True,
    }
    assert len(document["acc_matrix"]) == 2


def test_compare_writes_json_and_a_self_contained_report_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "results"
    args = ["compare", *SMALL, "--methods", "zero-shot", "holistic", "--out", str(out)]
    assert main(args) == 0
    table = capsys.readouterr().out
    for label in ("zero-shot", "holistic −pre", "holistic −during", "holistic −post"):
        assert label in table
    report = (out / "report.html").read_text()
    assert "<script" in report and "<script src=" not in report and "holistic" in report  # plotly.js inline
    before = (out / "zero-shot.json").read_bytes()
    names = sorted(p.name for p in out.iterdir())
    assert (
        all(name.isascii() for name in names) and "holistic-no-during.json" in names
    )  # the minus is display
    assert json.loads((out / "holistic-no-during.json").read_text())["label"] == "holistic −during"
    assert main(args) == 2  # existing results are not overwritten silently
    assert "--force" in capsys.readouterr().err
    assert (out / "zero-shot.json").read_bytes() == before
    assert main([*args, "--force"]) == 0


def test_compare_over_seeds_prints_intervals_and_paired_effects_and_writes_them(tmp_path, capsys):
    out = tmp_path / "seeds"
    assert (
        main(
            ["compare", *SMALL, "--methods", "zero-shot", "holistic", "--seeds", "0", "1", "--out", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "mean ± 95% t-interval" in printed and "±" in printed and "paired effects" in printed
    assert "stage post (alignment)" in printed and "holistic − zero-shot" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert {row["label"]: row["n"] for row in summary["rows"]}["holistic"] == 2
    assert (
        summary["command"].startswith("holomerge-lab compare")
        and summary["interval"] == "Student t over seeds"
    )
    runs = [json.loads((out / f"holistic-seed{s}.json").read_text()) for s in (0, 1)]
    assert [r["seed"] for r in runs] == [0, 1]
    effect = next(e for e in summary["effects"] if e["other"] == "zero-shot")
    diffs = [
        r["acc"] - json.loads((out / f"zero-shot-seed{s}.json").read_text())["acc"]
        for s, r in zip((0, 1), runs, strict=True)
    ]
    assert effect["mean"] == pytest.approx(sum(diffs) / 2)
    report = (out / "report.html").read_text()
    assert "Paired effects" in report and "mean ± 95% t-interval over 2 seed(s)" in report
    (out / "report.html").unlink()
    assert main(["summarize", str(out), "--write"]) == 0  # the same tables again, from the saved JSON
    again = capsys.readouterr().out
    assert "seeds 0 1" in again and "Paired effects" in (out / "report.html").read_text()
    rewritten = json.loads((out / "summary.json").read_text())["rows"]
    assert sorted(rewritten, key=lambda r: r["label"]) == sorted(summary["rows"], key=lambda r: r["label"])

    def rows(text: str) -> list[str]:  # the table rows, without the title line
        return sorted(line for line in text.splitlines() if "±" in line and "t-interval" not in line)

    assert rows(again) == rows(printed)


BAD_INPUTS = [
    (["run", "--stream", "split-cifar"], "split-mnist"),
    (["run", "--method", "magic"], "holistic"),
    (["run", "--backbone", "resnet"], "effnet-lite0"),
    (["run", "--preset", "huge"], "quick"),
    (["run", "--tasks", "0"], "at least 1"),
    (["run", "--stream", "split-digits", "--tasks", "9"], "--tasks is 9"),
    (["run", "--stream", "split-digits", "--train-per-task", "100000"], "--train-per-task is 100000"),
    (["run", "--alpha", "1.5"], "alpha"),
    (["run", "--alpha", "abc"], "invalid float"),
    (["run", "--variant", "exact"], "faithful"),
    (["run", "--align-teacher", "oracle"], "previous"),
    (["compare", "--methods", "holistic", "magic"], "magic"),
    (["frobnicate"], "invalid choice"),
    (["run", "--steps", "0"], "at least 1"),
    (["run", "--lr", "-1"], "--lr must be positive"),
    (["run", "--lr", "fast"], "invalid float"),
    (["run", "--seed", "-1"], "seed"),
    (["run", "--stream", "split-digits", "--test-per-task", "100000"], "--test-per-task is 100000"),
    (["run", "--align-loss", "huber"], "cosine"),
    (["run", "--align-parameter", "weights"], "projection"),
    (["run", "--stream", "split-mnist", "--tasks", "6"], "--tasks is 6"),
    (["run", "--resume", "/nonexistent/run"], "nothing to resume"),
    (["run", "--resume", "/tmp", "--out", "/var/tmp"], "differ"),
    (["run", "--train-per-task", "0"], "at least 1"),
    (["compare", "--seeds", "0", "-1"], "seed is a whole number >= 0"),
    (["compare", "--seeds", "0", "x"], "whole number"),
    (["run", "--seed", "1", "--seeds", "0", "1"], "either --seed or --seeds"),
    (["summarize", "/nonexistent/folder"], "no run JSON"),
    (["run", "--stream", "split-digits", "--order", "0,1,2"], "permutation"),
    (["run", "--order", "a,b"], "comma list"),
]


@pytest.mark.parametrize("argv, expected", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_code_2(argv, expected, capsys):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err


def test_console_script_reports_bad_input_without_traceback():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "holomerge_lab.cli", "run", "--stream", "nope"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("holomerge-lab: error: unknown stream 'nope'")
    assert "Traceback" not in done.stderr


# Bad paths and files: each is refused in one line, exit code 2, before any work, and nothing is written.
def _bad_paths(tmp: Path) -> dict[str, tuple[list[str], str]]:
    text_file = tmp / "notes.txt"
    text_file.write_text("not a checkpoint\n")
    not_a_run = tmp / "not-a-run"  # a folder with files in it, but no run (like a system folder)
    not_a_run.mkdir()
    (not_a_run / "data.csv").write_text("1,2\n")
    damaged = tmp / "damaged"
    damaged.mkdir()
    (damaged / "run-settings.json").write_text("{not json")
    return {
        "resume a folder with no run": (["--resume", str(not_a_run)], "nothing to resume in"),
        "resume an empty folder": (["--resume", str(tmp)], "no run-settings.json"),
        "resume a file": (["--resume", str(text_file)], "is not a folder"),
        "resume a damaged run": (["--resume", str(damaged)], "is damaged"),
        "out under /proc": (["--out", "/proc/holomerge-lab-results"], "cannot write into --out"),
        "out is a file": (["--out", str(text_file)], "is a file, not a folder"),
        "out inside a file": (["--out", str(text_file / "results")], "cannot be made"),
        "pretrained is a text file": (
            ["--backbone", "clip-vit-b-32", "--pretrained", str(text_file)],
            "is a text file, not a checkpoint",
        ),
        "out of a run that fails in prepare": (
            ["--tasks", "9", "--out", str(tmp / "new" / "results")],
            "--tasks is 9",
        ),
    }


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


BAD_PATHS = [
    "resume a folder with no run", "resume an empty folder", "resume a file", "resume a damaged run",
    "out under /proc", "out is a file", "out inside a file", "pretrained is a text file",
    "out of a run that fails in prepare",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_PATHS)
def test_bad_paths_are_one_line_exit_2_and_write_nothing(case, tmp_path, capsys):
    argv, expected = _bad_paths(tmp_path)[case]
    before = _snapshot(tmp_path)
    assert main(["run", *SMALL, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err, err
    assert _snapshot(tmp_path) == before
    assert not Path("/proc/holomerge-lab-results").exists()


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "holomerge_lab.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("where", ["a read-only folder", "inside a folder the user may not enter"])
def test_out_without_write_permission_is_refused_for_a_user_who_lacks_it(where, capsys):
    import holomerge_lab.experiment.pipeline
    import holomerge_lab.tour.viz  # noqa: F401  (imported while this process may still read everything)

    base = Path(tempfile.mkdtemp())
    try:
        base.chmod(0o755)
        locked = base / "locked"
        locked.mkdir(mode=0o555 if where == "a read-only folder" else 0o700)
        out = locked / "results" if where == "a read-only folder" else locked / "inner" / "results"
        root = os.geteuid() == 0
        if root:  # root may write anywhere: act as an ordinary user for the call (the real uid stays root)
            os.seteuid(65534)
        try:
            code = main(["run", *SMALL, "--out", str(out)])
        finally:
            if root:
                os.seteuid(0)
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert "cannot write into --out" in err and "Permission denied" in err and "Traceback" not in err
        assert list(locked.iterdir()) == []
    finally:
        shutil.rmtree(base)


def test_two_runs_cannot_write_one_out_at_once(tmp_path, capsys):
    out = tmp_path / "results"
    first = _cli("run", *SMALL[:-5], "--steps", "200", "--tasks", "2", "--quiet", "--out", str(out))
    try:
        deadline = time.monotonic() + 300
        while (
            not (out / "run-settings.json").exists() and first.poll() is None and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second one started"
        before = _snapshot(out)
        assert main(["run", *SMALL, "--out", str(out), "--force"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "another holomerge-lab run is writing" in err
        assert set(_snapshot(out)) >= set(before)  # the second run added and removed nothing
    finally:
        first.kill()
        first.wait()


def test_a_full_disk_ends_in_one_line_and_leaves_no_partial_file(tmp_path, capsys):
    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        assert main(["run", *SMALL, "--out", str(disk / "results")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "No space left on device" in err and "Traceback" not in err
        assert not [p for p in disk.rglob("*") if p.name.endswith(".tmp")]  # nothing half-written
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_resume_refuses_contradicting_flags_and_the_other_command(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", *SMALL, "--out", str(out)]) == 0
    capsys.readouterr()
    for argv, expected in (
        (["run", "--resume", str(out), "--seed", "3", "--force"], "seed: the run has 0, now 3"),
        (["run", "--resume", str(out), "--no-post", "--force"], "post: the run has True, now False"),
        (["compare", "--resume", str(out), "--force"], "holds a `run` run"),
        (["run", "--resume", str(out)], "already exists; pass --force"),
    ):
        before = _snapshot(out)
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
        assert _snapshot(out) == before
    assert main(["run", "--resume", str(out), "--seed", "0", "--stream", "split-digits", "--force"]) == 0


@pytest.mark.parametrize("cache", ["a file", "under /proc"])
def test_an_unusable_cache_folder_is_refused_before_any_work(cache, tmp_path, monkeypatch, capsys):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a folder\n")
    monkeypatch.setenv(
        "HOLOMERGE_CACHE", str(text_file) if cache == "a file" else "/proc/holomerge-lab-cache"
    )
    before = _snapshot(tmp_path)
    assert main(["run", *SMALL, "--out", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and "the cache folder (HOLOMERGE_CACHE)" in err and "Traceback" not in err
    )
    assert _snapshot(tmp_path) == before


def test_the_checkpoint_check_accepts_every_checkpoint_format_and_refuses_other_files(tmp_path):
    import safetensors.torch
    import torch

    from holomerge_lab.errors import UserError
    from holomerge_lab.models.clip import check_checkpoint_file

    state = {"visual.proj": torch.randn(4, 3)}
    torch.save(state, tmp_path / "zip.pt")
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    safetensors.torch.save_file(state, str(tmp_path / "weights.safetensors"))
    for name in ("zip.pt", "legacy.pt", "weights.safetensors"):
        check_checkpoint_file(str(tmp_path / name))
        assert torch.equal(
            (safetensors.torch.load_file if name.endswith("safetensors") else torch.load)(
                str(tmp_path / name)
            )["visual.proj"],
            state["visual.proj"],
        )
    (tmp_path / "notes.txt").write_text("model weights: see the cluster\n")
    (tmp_path / "blob.bin").write_bytes(bytes(range(1, 256)) * 4)
    for name, kind in (("notes.txt", "a text file"), ("blob.bin", "a binary file of another format")):
        with pytest.raises(UserError, match=f"is {kind}, not a checkpoint"):
            check_checkpoint_file(str(tmp_path / name))


def test_every_flag_of_every_command_says_what_it_does_and_lists_its_choices():
    """`holomerge-lab run --help` (and compare, sweep, summarize, bench): no flag without a description, and every
    flag whose value is one of a fixed set names each member of the set the settings are checked against."""
    from holomerge_lab.cli_parser import build_parser
    from holomerge_lab.data.streams import STREAMS
    from holomerge_lab.experiment.config import METHODS, PRESETS
    from holomerge_lab.method.align import LOSSES
    from holomerge_lab.models.backbone import PRECISIONS
    from holomerge_lab.models.zoo import BACKBONES

    choices = {
        "--method": METHODS, "--methods": METHODS, "--stream": STREAMS, "--preset": PRESETS,
        "--backbone": BACKBONES, "--precision": PRECISIONS, "--align-loss": LOSSES,
        "--start": ("merged", "pretrained", "previous"), "--variant": ("faithful", "clean"),
        "--align-parameter": ("bias", "projection"), "--align-teacher": ("previous", "current"),
        "--device": ("auto", "cpu", "cuda"),
    }  # fmt: skip
    listed = 0
    for name, command in build_parser().commands.items():
        for action in command._actions:
            flag = max(action.option_strings, key=len, default=action.dest)
            assert action.help and action.help.strip(), f"{name} {flag} has no description"
            for choice in choices.get(flag, ()):
                words = action.help.translate(str.maketrans("|,:;()", "      ")).split()
                assert choice in words, (name, flag, choice)
                listed += 1
    assert listed > 100  # run, compare and sweep each list every choice
