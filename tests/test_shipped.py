"""The shipped results: values survive the JSON round trip with their types, a value is taken from the bundle only
for exactly the settings it was recorded with, the bundle's command remakes a (reduced) bundle with the same values,
and every notebook opens in normal mode from the shipped bundle (made by another run of that command) without
computing anything heavy."""

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future
from importlib import metadata
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from pool_support import beside, one_thread

from holomerge_lab.analysis import probes
from holomerge_lab.errors import UserError
from holomerge_lab.experiment.config import RunConfig
from holomerge_lab.experiment.pipeline import RunResult
from holomerge_lab.tour import findings, shipped, widgets
from holomerge_lab.tour.run_notebook import code_digest

NOTEBOOKS = sorted(shipped.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
TOUR = [p for p in NOTEBOOKS if p.name[:2] != "08"]
FINDINGS = Path(__file__).parent.parent / "benchmarks" / "tour_findings.md"
NUMBER = re.compile(r"[+−-]?\d+(?:\.\d+)?")
TIMED_LIVE = "step time"  # a line holding this reads a wall-clock time measured on the machine that runs it


def comparable(section: str) -> str:
    """A findings section with its numbers masked and its live-timed lines left out."""
    return "\n".join(NUMBER.sub("N", line) for line in section.splitlines() if TIMED_LIVE not in line)
REWRITE_FINDINGS = "rewrite it (the commands atop benchmarks/tour_findings.py)"
REMAKE = "remake it: `make results` (python -m holomerge_lab.tour.shipped --out holomerge_lab/results)"


def a_run(seed: int = 0) -> RunResult:
    matrix = np.array([[0.9, np.nan], [0.7, 0.8]])
    return RunResult(
        method="holistic", label="holistic", stream="split-animal", backbone="effnet", seed=seed,
        stages={"pre": True, "during": True, "post": False}, acc_matrix=matrix, joint_accuracy=[0.9, 0.75],
        state_bytes=[10, 20], seconds=1.5, config={"steps": 3, "seed": seed},
    )  # fmt: skip


def test_values_come_back_with_their_types():
    value = {
        "array": np.arange(6, dtype=np.float32).reshape(2, 3),
        "tensor": torch.tensor([[1, 2]], dtype=torch.int64),
        "pair": (1, "b"),
        "by_seed": {0: 0.5, 3: float("nan"), 4: float("-inf")},
        "runs": [a_run(0), a_run(1)],
        "step": probes.AlignmentStep(
            1, {"old": {"merged": {"mse": 0.25}, "aligned": {"mse": 0.2}}}, {"merged": 0.5, "aligned": 0.6}
        ),
        "scalar": np.float64(0.125),
        "empty": np.zeros((0, 3)),
        "gaps": np.array([[1.0, np.nan]]),
    }
    back = shipped.decode(json.loads(json.dumps(shipped.encode(value))))
    assert back["array"].dtype == np.float32 and np.array_equal(back["array"], value["array"])
    assert back["tensor"].dtype == torch.int64 and torch.equal(back["tensor"], value["tensor"])
    assert back["pair"] == (1, "b")
    assert list(back["by_seed"]) == [0, 3, 4] and back["by_seed"][0] == 0.5 and np.isnan(back["by_seed"][3])
    assert back["by_seed"][4] == float("-inf")
    json.dumps(shipped.encode(value), allow_nan=False)  # valid JSON for any reader, not only Python's
    assert [r.to_json() for r in back["runs"]] == [r.to_json() for r in value["runs"]]
    assert back["step"] == value["step"] and back["step"].reduction("old", "mse") == value["step"].reduction(
        "old", "mse"
    )
    assert back["scalar"] == 0.125 and type(back["scalar"]) is float
    assert back["empty"].shape == (0, 3) and np.isnan(back["gaps"][0, 1])


def test_what_cannot_be_shipped_is_refused():
    with pytest.raises(TypeError, match="cannot ship a function"):
        shipped.encode({"forward": lambda x: x})
    with pytest.raises(UserError, match="only holomerge_lab's classes"):
        shipped.decode({"__dataclass__": "os:PathLike", "fields": {}})


def results_in(tmp_path, monkeypatch, **env) -> shipped.Results:
    for key in ("HOLOMERGE_LIVE", "HOLOMERGE_RECORD", "HOLOMERGE_RESULTS", "HOLOMERGE_SHIPPED_ONLY"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return shipped.Results("99_test", folder=tmp_path / "bundle")


def test_a_value_is_shipped_only_for_the_settings_it_was_recorded_with(tmp_path, monkeypatch, capsys):
    config = RunConfig(stream="split-animal", tasks=2, steps=3)
    settings = {"config": config, "seeds": [0, 1]}
    recorder = results_in(tmp_path, monkeypatch, HOLOMERGE_RECORD=str(tmp_path / "bundle"))
    assert recorder.live  # recording always computes
    assert recorder.get("curve", settings, lambda: {0: np.array([0.5, 0.25])})[0][1] == 0.25
    reader = results_in(tmp_path, monkeypatch)
    calls = []

    def compute():
        calls.append(1)
        return {0: np.zeros(2)}

    assert reader.get("curve", {"config": config, "seeds": [0, 1]}, compute)[0][1] == 0.25 and calls == []
    assert "shipped result" in capsys.readouterr().out and reader.shown == ["curve"]
    other = {"config": RunConfig(stream="split-animal", tasks=2, steps=4), "seeds": [0, 1]}
    assert reader.get("curve", other, compute)[0][1] == 0 and calls == [1]  # another setting: computed live
    reader.live = True
    reader.get("curve", settings, compute)
    assert calls == [1, 1]  # live: computed even where a value is stored
    strict = results_in(tmp_path, monkeypatch, HOLOMERGE_SHIPPED_ONLY="1")
    with pytest.raises(UserError, match="recorded with other settings"):
        strict.get("curve", other, compute)
    with pytest.raises(UserError, match="is not in it"):
        strict.get("missing", settings, compute)


def test_a_damaged_or_foreign_file_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("HOLOMERGE_RESULTS", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="is not a folder"):
        shipped.Results("99_test")
    monkeypatch.delenv("HOLOMERGE_RESULTS")
    (tmp_path / "99_test.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        shipped.Results("99_test", folder=tmp_path)
    (tmp_path / "99_test.json").write_text(json.dumps({"format": 0, "entries": {}}))
    with pytest.raises(UserError, match="format 0"):
        shipped.Results("99_test", folder=tmp_path)


def test_a_panels_first_press_is_shown_from_the_bundle_and_its_buttons_rerun_live(tmp_path, monkeypatch):
    config = RunConfig(stream="split-animal", tasks=2, train_per_task=20, test_per_task=20, steps=1)
    ran = []

    def execute(config, prepared, progress):
        ran.append(config.seed)
        return {"seed": config.seed, "tasks": len(prepared.stream.tasks)}

    def panel():
        return widgets.Panel(config, ["steps"], seeds=2, execute=execute, rows=lambda r: r, figure=lambda r: [])

    recorder = results_in(tmp_path, monkeypatch, HOLOMERGE_RECORD=str(tmp_path / "bundle"))
    recorder.click("grid", panel())
    assert ran == [0, 1]
    reader, shown = results_in(tmp_path, monkeypatch), panel()
    reader.click("grid", shown)
    assert ran == [0, 1] and shown.results == [{"seed": 0, "tasks": 2}, {"seed": 1, "tasks": 2}]
    assert "shipped results" in shown.status.value
    shown.click()  # the button: live
    assert ran == [0, 1, 0, 1] and len(shown.results) == 4
    changed = panel()
    changed.controls["steps"].value = 2  # another press than the one recorded: live
    reader.click("grid", changed)
    assert ran == [0, 1, 0, 1, 0, 1]


# --- the command, on a reduced setting (fast mode), and the shipped bundle -----------------------------------------
# Each notebook runs in its own process, two at a time with one thread each (tests/pool_support.py), the normal-mode
# opens queued behind the bundle's command so that neither waits for the other's last notebook; a test waits for its
# own run.


@pytest.fixture(scope="session")
def runs(request, tmp_path_factory) -> Iterator[tuple[Path, dict[str, Future]]]:
    """The reduced bundle's folder, and {test: its notebook's run}: of the bundle's command into that folder (fast
    mode), or in normal mode with every heavy value from the shipped bundle (a missing one fails)."""
    folder = tmp_path_factory.mktemp("reduced-bundle")

    def remake(path: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "holomerge_lab.tour.shipped", path.name[:2], "--fast", "--out", str(folder),
                   "--timeout", "90"]  # fmt: skip
        return subprocess.run(command, env=one_thread(), capture_output=True, text=True)

    def open_from_bundle(path: Path) -> subprocess.CompletedProcess:
        env = {**one_thread(), "HOLOMERGE_RESULTS": str(shipped.BUNDLE), "HOLOMERGE_SHIPPED_ONLY": "1",
               "HF_HUB_OFFLINE": "1"}  # fmt: skip
        where = tmp_path_factory.mktemp(path.stem)
        command = [sys.executable, "-m", "holomerge_lab.tour.run_notebook", str(path), "--cwd", str(where),
                   "--timeout", "600", "--keep", str(where / path.name)]  # fmt: skip
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)

    tests = {"test_the_command_runs_each_notebook_live_and_records_it": remake,
             "test_each_notebook_opens_in_normal_mode_from_the_shipped_bundle": open_from_bundle}  # fmt: skip
    with beside(request, tests) as futures:
        yield folder, futures


@pytest.mark.notebooks
@pytest.mark.parametrize("path", TOUR, ids=lambda p: p.stem)
def test_the_command_runs_each_notebook_live_and_records_it(path, runs, request):
    """Fast mode, live, in a fresh kernel: the notebook runs to the end (this is the tour's fast-mode test) and its
    file records every value the shipped bundle holds, with the command, versions and code that made them."""
    folder, futures = runs
    done = futures[request.node.nodeid].result()
    assert done.returncode == 0, f"{path.name}:\n{done.stderr[-4000:]}"
    data = json.loads((folder / f"{path.stem}.json").read_text())
    made = data["made_by"]
    assert made["fast"] and made["command"].startswith("python -m holomerge_lab.tour.shipped")
    assert made["packages"]["torch"] == metadata.version("torch")
    assert made["code_sha256"] == code_digest(nbformat.read(path, 4))
    assert made["cells"] and made["seconds"] > 0
    ship = shipped.read_file(shipped.BUNDLE / f"{path.stem}.json")
    assert sorted(data["entries"]) == sorted(ship["entries"]), f"{path.name}: the shipped bundle is stale: {REMAKE}"
    for name, entry in data["entries"].items():  # the same kind of value, at other sizes
        assert type(shipped.decode(entry["value"])) is type(shipped.decode(ship["entries"][name]["value"])), name


@pytest.mark.parametrize("path", TOUR, ids=lambda p: p.stem)
def test_the_shipped_values_were_made_by_the_code_the_notebook_holds(path):
    data = shipped.read_file(shipped.BUNDLE / f"{path.stem}.json")
    made = data.get("made_by")
    assert made is not None, f"{path.name} has no shipped results: {REMAKE}"
    assert not made["fast"], f"{path.name}: the shipped bundle must come from normal mode"
    assert made["code_sha256"] == code_digest(nbformat.read(path, 4)), f"{path.name} changed since: {REMAKE}"


def test_the_bundle_is_small_and_holds_every_notebook():
    sizes = {p.name: p.stat().st_size for p in shipped.BUNDLE.glob("*.json")}
    assert sorted(sizes) == sorted(f"{p.stem}.json" for p in TOUR), f"{REMAKE}"
    assert sum(sizes.values()) < 4_000_000, sizes


def test_every_bundle_file_was_recorded_on_the_same_thread_count():
    """Float sums follow torch's intra-op thread count, so a bundle whose notebooks ran on different counts would
    show runs a live rerun on any one machine cannot all give (and notebook 00's toggles come from 06's file)."""
    files = sorted(shipped.BUNDLE.glob("*.json"))
    threads = {p.name: shipped.read_file(p)["made_by"]["machine"]["threads"] for p in files}
    assert len(set(threads.values())) == 1, threads


def test_git_would_commit_the_bundle():
    """A clean checkout (CI, a clone, Binder) has only what git tracks: an ignore rule that swallows the bundle
    leaves every reader computing live."""
    root = shipped.BUNDLE.parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout: nothing can ignore the bundle here")
    files = [str(p.relative_to(root)) for p in shipped.BUNDLE.glob("*.json")]
    ignored = subprocess.run(["git", "check-ignore", *files], cwd=root, capture_output=True, text=True)
    assert ignored.stdout == "", f"git ignores the shipped bundle: {ignored.stdout}"


@pytest.mark.notebooks
@pytest.mark.parametrize("path", TOUR, ids=lambda p: p.stem)
def test_each_notebook_opens_in_normal_mode_from_the_shipped_bundle(path, runs, request):
    """A reader's default: normal mode, every heavy value from the shipped bundle (a missing one fails)."""
    done = runs[1][request.node.nodeid].result()
    assert done.returncode == 0, f"{path.name} did not open from the shipped bundle:\n{done.stderr[-4000:]}"
    print(f"{path.name} from the shipped bundle: {float(done.stdout.split()[-1]):.1f} s")  # recorded, never asserted
    executed = nbformat.read(Path(done.args[done.args.index("--keep") + 1]), 4)
    said = findings.to_markdown(path.stem, findings.findings(executed)).rstrip("\n")
    written = findings.sections(FINDINGS.read_text()).get(path.stem)
    # every word and verdict as written; a number may differ in its last digits where a light cell computes it
    # live on another CPU (the heavy values come from the bundle and are the same everywhere); a time measured live
    # (01's tangent / standard step time) is the machine's own, its verdict too
    assert written is not None and comparable(said) == comparable(written), (
        f"{path.name} says other findings than benchmarks/tour_findings.md: {REWRITE_FINDINGS}")


def test_notebook_00s_eight_stage_toggles_are_answered_from_the_shipped_results():
    """What notebook 00, docs/notebooks.md and TEACHING.md say: at 00's settings (read from its own shipped entry) every
    stage combination on its seeds is in the bundle (notebook 06's grid), so a press of its panel runs nothing."""
    settings = shipped.read_file(shipped.BUNDLE / "00_tour.json")["entries"]["methods"]["settings"]
    config, seeds = shipped.decode(settings["config"]), settings["seeds"]
    for combination in widgets.stage_combinations(config):
        configs = widgets.with_seeds([combination], len(seeds))
        assert [c.seed for c in configs] == seeds, configs
        found = shipped.find_recorded(configs, shipped.BUNDLE)
        assert found is not None, f"{combination.label} at 00's settings is not in the shipped results: {REMAKE}"
        assert [r.stages for r in found[0]] == [combination.resolve().stages] * len(seeds)


def test_notebook_09s_first_press_is_notebook_06s_runs_number_for_number():
    """What notebook 09 says of its panel's first press: its 15 recorded runs (the five rows at the base point, 3
    seeds, recorded live by 09's own recording) are runs of notebook 06's grid with the same accuracy matrices."""
    press = shipped.read_file(shipped.BUNDLE / "09_regime_map.json")["entries"]["five rows"]["value"]
    grid = shipped.read_file(shipped.BUNDLE / "06_ablation_lab.json")["entries"]
    in_06 = {shipped.run_key(r.config): r for e in grid.values() for r in map(shipped.decode, shipped._runs_in(e["value"]))}
    runs = [shipped.decode(r) for r in shipped._runs_in(press)]
    assert len(runs) == 15
    for run in runs:
        twin = in_06.get(shipped.run_key(run.config))
        assert twin is not None and twin.to_json()["acc_matrix"] == run.to_json()["acc_matrix"], (run.label, run.seed)
