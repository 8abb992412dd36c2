"""A run killed with SIGKILL after a task resumes to exactly the result of a run never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time

ARGS = ["run", "--stream", "split-digits", "--tasks", "5", "--train-per-task", "40", "--test-per-task", "20",
        "--steps", "40", "--method", "holistic", "--quiet", "--json"]  # fmt: skip
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def cli(*args: str, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-m", "holomerge_lab.cli", *args]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, **kwargs
    )


def kill_after_the_second_task(*args: str, out, name: str = "holistic") -> None:
    process = cli(*args, "--out", str(out))
    second_task = out / "checkpoints" / name / "task-002.pt"
    deadline = time.monotonic() + 300
    while not second_task.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / f"{name}.json").exists()


def test_kill_after_a_task_then_resume_gives_the_uninterrupted_result(tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    with cli(*ARGS, "--out", str(whole)) as uninterrupted:  # one thread each: it runs beside the others on 2 cores
        kill_after_the_second_task(*ARGS, out=killed)
        resumed = cli(*ARGS, "--resume", str(killed))
        out, err = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, err
        out_whole, err_whole = uninterrupted.communicate(timeout=600)
        assert uninterrupted.returncode == 0, err_whole

    a, b = json.loads(out), json.loads(out_whole)
    for document in (a, b):
        document.pop("seconds"), document.pop("reused_tasks")  # how long, and what the task cache saved
    assert a == b
    assert json.loads((killed / "holistic.json").read_text())["acc_matrix"] == b["acc_matrix"]


def test_resume_with_the_folder_alone_continues_with_the_saved_settings(tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    settings = [*ARGS[:-2], "--seed", "4", "--alpha", "0.3", "--no-post"]  # none of them a default
    with cli(*settings, "--out", str(whole)) as uninterrupted:
        kill_after_the_second_task(*settings, out=killed, name="holistic-no-post")
        resumed = cli("run", "--resume", str(killed))
        _, err = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, err
        _, err_whole = uninterrupted.communicate(timeout=600)
        assert uninterrupted.returncode == 0, err_whole
    a, b = (json.loads((folder / "holistic-no-post.json").read_text()) for folder in (killed, whole))
    for document in (a, b):
        document.pop("seconds"), document.pop("reused_tasks")  # how long, and what the task cache saved
    assert a == b and a["seed"] == 4 and a["config"]["alpha"] == 0.3


def test_resume_refuses_another_runs_checkpoints(tmp_path):
    first = cli(*ARGS[:-1], "--tasks", "2", "--out", str(tmp_path))  # a finished 2-task run's folder
    assert first.wait(timeout=600) == 0
    (tmp_path / "holistic.json").unlink()  # pretend it did not finish
    (tmp_path / "report.html").unlink()
    (tmp_path / "summary.json").unlink()
    other = cli(*ARGS[:-1], "--tasks", "2", "--seed", "3", "--resume", str(tmp_path))
    _, err = other.communicate(timeout=600)
    assert other.returncode == 2
    assert "other settings" in err and "seed: the run has 0, now 3" in err and "Traceback" not in err
    saved = tmp_path / "run-settings.json"  # settings edited by hand: the checkpoints still tell
    saved.write_text(saved.read_text().replace('"seed": null', '"seed": 3'))
    edited = cli("run", "--resume", str(tmp_path))
    _, err = edited.communicate(timeout=600)
    assert edited.returncode == 2
    assert (
        "belongs to a different run" in err and "seed: checkpoint 0, now 3" in err and "Traceback" not in err
    )


def test_a_fresh_run_does_not_overwrite_existing_checkpoints(tmp_path):
    assert cli(*ARGS[:-1], "--tasks", "1", "--out", str(tmp_path)).wait(timeout=600) == 0
    (tmp_path / "holistic.json").unlink()
    (tmp_path / "report.html").unlink()
    (tmp_path / "summary.json").unlink()
    again = cli(*ARGS[:-1], "--tasks", "1", "--out", str(tmp_path))
    _, err = again.communicate(timeout=600)
    assert again.returncode == 2 and "--force" in err
