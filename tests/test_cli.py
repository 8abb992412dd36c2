"""The command line: real runs, and a one-line error with exit code 2 for every bad input."""

import json
import os
import subprocess
import sys

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
    assert sorted(line for line in again.splitlines()[1:] if "±" in line) == sorted(
        line for line in printed.splitlines() if "±" in line and "seeds" not in line
    )


BAD_INPUTS = [
    (["run", "--stream", "split-cifar"], "split-mnist"),
    (["run", "--method", "magic"], "holistic"),
    (["run", "--backbone", "resnet"], "effnet-lite0"),
    (["run", "--preset", "huge"], "quick"),
    (["run", "--tasks", "0"], "at least 1"),
    (["run", "--stream", "split-digits", "--tasks", "9"], "n_tasks"),
    (["run", "--stream", "split-digits", "--train-per-task", "100000"], "train_per_task"),
    (["run", "--alpha", "1.5"], "alpha"),
    (["run", "--alpha", "abc"], "invalid float"),
    (["run", "--variant", "exact"], "faithful"),
    (["run", "--align-teacher", "oracle"], "previous"),
    (["compare", "--methods", "holistic", "magic"], "magic"),
    (["frobnicate"], "invalid choice"),
    (["run", "--steps", "0"], "at least 1"),
    (["run", "--lr", "-1"], "lr must be positive"),
    (["run", "--lr", "fast"], "invalid float"),
    (["run", "--seed", "-1"], "seed"),
    (["run", "--stream", "split-digits", "--test-per-task", "100000"], "test_per_task"),
    (["run", "--align-loss", "huber"], "cosine"),
    (["run", "--align-parameter", "weights"], "projection"),
    (["run", "--stream", "split-mnist", "--tasks", "6"], "n_tasks"),
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
