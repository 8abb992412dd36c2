"""The command line: `holomerge-lab run`, `holomerge-lab compare`.

Bad input ends with one line on stderr, naming what is valid, and exit code 2; never a traceback.
This module holds ``main`` and the subcommands; the parser is cli_parser.py, the --out folder's handling and the
words of messages cli_output.py.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shlex
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from .cli_output import (
    OUTPUT_OPTIONS,
    SETTINGS_FILE,
    _check_cache,
    _claim,
    _discard,
    _message,
    _name,
    _no_constant,
    _one_line_warning,
    _output_folder,
    _save,
    _settings,
)
from .cli_parser import build_parser
from .errors import UserError


def _typed(argv: Sequence[str]) -> dict:
    """The options typed on the command line, without the defaults argparse fills in."""
    parser = build_parser()
    command = build_parser().parse_args(argv).command
    for action in parser.commands[command]._actions:
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(argv))


def _config(args: argparse.Namespace):
    from .experiment.config import RunConfig

    fields = {f.name for f in dataclasses.fields(RunConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    for stage in ("pre", "during", "post"):
        given[stage] = not getattr(args, f"no_{stage}", False)
    config = RunConfig(**given)
    config.resolve()  # validate every field now, before any work starts
    return config


def _resumed(args: argparse.Namespace, typed: dict) -> argparse.Namespace:
    """The arguments of the run saved in --resume DIR, with this call's output options; a setting typed now that
    contradicts the saved run is refused, naming each difference."""
    folder = args.resume
    if args.out is not None and args.out.resolve() != folder.resolve():
        raise UserError(f"--resume {folder} and --out {args.out} differ; a run resumes in its own folder")
    if not folder.is_dir():
        raise UserError(
            f"nothing to resume: {folder} is not a folder; --resume expects the --out of an earlier run"
        )
    saved_file = folder / SETTINGS_FILE
    if not saved_file.is_file():
        raise UserError(
            f"nothing to resume in {folder}: it holds no holomerge-lab run (no {SETTINGS_FILE}); --resume expects "
            "the --out folder of an earlier run"
        )
    try:
        saved = json.loads(saved_file.read_text())
        command, settings = saved["command"], saved["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{saved_file} is damaged; start the run again without --resume") from None
    if command != args.command:
        raise UserError(
            f"{folder} holds a `{command}` run; continue it with holomerge-lab {command} --resume"
        )
    given = _settings(argparse.Namespace(**typed))
    saved_config = dataclasses.asdict(_config(argparse.Namespace(**settings)).resolve())
    asked_config = dataclasses.asdict(_config(argparse.Namespace(**{**settings, **given})).resolve())
    differences = [
        f"{key}: the run has {saved_config[key]!r}, now {value!r}"
        for key, value in asked_config.items()
        if saved_config[key] != value
    ]
    if given.get("methods", settings.get("methods")) != settings.get("methods"):
        differences.append(f"methods: the run has {settings.get('methods')}, now {given['methods']}")
    if differences:
        raise UserError(
            f"--resume {folder} continues a run with other settings ({'; '.join(differences)}); drop those flags "
            "to continue it as it was, or start a new run with another --out"
        )
    defaults = vars(build_parser().parse_args([command]))  # options added since the run was saved
    output = {k: v for k, v in vars(args).items() if k in OUTPUT_OPTIONS}
    return argparse.Namespace(**{**defaults, **settings, **output})


def _run(args: argparse.Namespace, command: str, typed: dict, held: contextlib.ExitStack) -> None:
    import dataclasses as dc

    from .analysis.evidence import effects, summarize, summary_table
    from .data import cache_dir
    from .experiment.config import METHODS
    from .experiment.pipeline import DEFAULT_METHODS, compare_configs, prepare, run
    from .files import atomic_write_text
    from .tour.viz import format_table, results_table

    if args.resume is not None:
        args = _resumed(args, typed)
        args.out = args.resume
    config = _config(args)
    if args.seeds is not None and args.seed is not None:
        raise UserError("give either --seed or --seeds, not both")
    seeds = list(dict.fromkeys(args.seeds or [config.resolve().seed]))
    several = len(seeds) > 1
    if args.command == "run":
        configs = [config]
    else:
        methods = args.methods or DEFAULT_METHODS
        if "all" in methods and len(methods) > 1:
            raise UserError(
                "'all' already names every method; give --methods all alone, or only method names"
            )
        if methods == ["all"]:
            methods = list(METHODS)
        configs = compare_configs(config, methods)
        for c in configs:
            c.resolve()
    names = [_name(c.label, s, several) for s in seeds for c in configs]
    if args.out is not None:
        held.enter_context(_output_folder(args.out))
        claimed = [f"{n}.json" for n in names] + ["report.html", "summary.json"]
        if args.resume is None:  # a fresh run must not silently replace another run's checkpoints either
            claimed += [f"checkpoints/{n}" for n in names] + [SETTINGS_FILE]
        _claim(args.out, claimed, args.force)
    _check_cache()
    task_cache = None if args.no_task_cache else cache_dir() / "task-models"
    first = prepare(dc.replace(config, seed=seeds[0]), progress=not args.quiet)  # data and backbone checked
    if args.out is not None and args.resume is None:
        atomic_write_text(
            args.out / SETTINGS_FILE, json.dumps({"command": args.command, "settings": _settings(args)})
        )
    results = []
    try:
        for seed in seeds:
            prepared = (
                first if seed == seeds[0] else prepare(dc.replace(config, seed=seed), progress=not args.quiet)
            )
            for c in configs:
                folder = None if args.out is None else args.out / "checkpoints" / _name(c.label, seed, several)
                if folder is not None and args.force and args.resume is None and folder.exists():
                    for old in folder.glob("task-*.pt"):
                        old.unlink()
                results.append(
                    run(
                        dc.replace(c, seed=seed), prepared, progress=not args.quiet, checkpoints=folder,
                        resume=args.resume is not None, task_cache=task_cache,
                    )
                )  # fmt: skip
                if args.json:
                    print(json.dumps(results[-1].to_json()), flush=True)
    except UserError:  # a run refused (it diverged, a disk filled): a fresh run leaves nothing behind
        if args.out is not None and args.resume is None:
            _discard(args.out, names)
        raise
    if not args.json:
        runs = [r.to_json() for r in results]
        if several:
            print(f"\n{config.stream} ({config.preset} preset, seeds {' '.join(map(str, seeds))}; "
                  "mean ± 95% t-interval over the seeds):")  # fmt: skip
            print(format_table(summary_table(summarize(runs))))
        else:
            print(f"\n{config.stream} ({config.preset} preset, seed {seeds[0]}):")
            print(format_table(results_table(results)))
        paired = effects(runs)
        if paired and len(runs) > 1:
            _print_effects(paired, args.margin)
    reused = sum(r.reused_tasks for r in results)
    if reused:
        print(f"{reused} fine-tuned task model(s) reused from the task cache ({cache_dir() / 'task-models'})",
              file=sys.stderr)  # fmt: skip
    if args.out is not None:
        _save(results, args, command, several)


def _print_effects(paired: list[dict], margin: float) -> None:
    from .analysis.evidence import effects_table
    from .analysis.stats import margin_words
    from .tour.viz import format_table

    print(f"\npaired effects on ACC (holistic − row, per seed, in points; a stage's row: switching it on). "
          f"p ≠0: paired t-test of no difference; p ±m: two one-sided tests of equivalence within m = "
          f"{margin_words(margin)}; Holm: adjusted over these {len(paired)} rows; level 0.05:")  # fmt: skip
    print(format_table(effects_table(paired, margin)))


def _summarize(folder: Path, write: bool, command: str, margin: float) -> None:
    from .analysis.evidence import (
        RUN_KEYS,
        check_one_comparison,
        effects,
        summarize,
        summary_table,
    )
    from .files import atomic_write_text
    from .tour.viz import format_table

    paths = sorted(p for p in folder.glob("*.json") if p.name != "summary.json") if folder.is_dir() else []
    runs = []
    for path in paths:
        try:
            runs.append(json.loads(path.read_text(), parse_constant=_no_constant))
        except (OSError, ValueError) as e:
            raise UserError(f"{path} is not a run's JSON ({e}); remove it or choose another folder") from None
    named = [(p, r) for p, r in zip(paths, runs, strict=True) if isinstance(r, dict) and RUN_KEYS <= set(r)]
    if not named:
        raise UserError(
            f"no run JSON in {folder}: give a folder written by `holomerge-lab run/compare --out`"
        )
    check_one_comparison(named)
    runs = [r for _, r in named]
    from .experiment.config import METHODS

    rank = {m: i for i, m in enumerate(METHODS)}
    runs.sort(key=lambda r: (rank.get(r["method"], len(rank)), r["label"], r["seed"]))
    seeds = sorted({r["seed"] for r in runs})
    print(f"{runs[0]['stream']}: {len(runs)} runs, seeds {' '.join(map(str, seeds))}; "
          "mean ± 95% t-interval over the seeds")  # fmt: skip
    print(format_table(summary_table(summarize(runs))))
    paired = effects(runs)
    if paired:
        _print_effects(paired, margin)
    if write:
        from .analysis.evidence import to_json
        from .experiment.pipeline import RunResult
        from .tour.viz import write_report

        atomic_write_text(
            folder / "summary.json",
            json.dumps({"command": command, **to_json(runs, margin=margin)}, indent=1, allow_nan=False),
        )
        write_report([RunResult.from_json(r) for r in runs], folder / "report.html", command=command, margin=margin)
        print(f"wrote {folder / 'summary.json'} and {folder / 'report.html'}", file=sys.stderr)


def _list() -> None:
    from .data import STREAMS
    from .experiment.config import METHODS, PRESETS
    from .models.zoo import BACKBONES

    for title, names in (
        ("streams", STREAMS),
        ("methods", METHODS),
        ("backbones", BACKBONES),
        ("presets", PRESETS),
    ):
        print(f"{title}: {', '.join(names)}")


def _sweep(args: argparse.Namespace, held: contextlib.ExitStack) -> None:
    from .analysis.sweep import grid, parse_order, parse_stages, sweep, sweep_summary, sweep_table
    from .files import atomic_write_text
    from .tour.viz import format_table

    configs = grid(
        _config(args), stages=[parse_stages(s) for s in args.stages], alphas=args.alphas or [None],
        seeds=args.seeds or [None], orders=[parse_order(o) for o in args.orders],
    )  # fmt: skip
    if args.out is not None:
        held.enter_context(_output_folder(args.out))
        _claim(args.out, ["sweep.json"], args.force)
    _check_cache()
    results = sweep(configs, workers=args.workers, ray_address=args.ray)
    if args.json:
        print(json.dumps(results))
    else:
        print(format_table(sweep_table(results)))
        if len(set(args.seeds or [])) > 1:
            print("\nover the seeds (mean ± 95% t-interval):")
            print(format_table(sweep_summary(results)))
    if args.out is not None:
        atomic_write_text(args.out / "sweep.json", json.dumps(results, indent=1, allow_nan=False))


def _bench(args: argparse.Namespace) -> None:
    from .analysis.bench import bench, dumps

    results = bench(memory_tasks=args.memory_tasks, rounds=args.rounds)
    if args.json:
        print(dumps(results))
        return
    for key in (
        "linear_step_ratio",
        "linear_step_ratio_tiny_clip",
        "fisher_speedup",
        "carried_bytes_by_tasks",
    ):
        print(f"{key}: {results[key]}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    held = (
        contextlib.ExitStack()
    )  # the --out folder's lock, released (and an empty new folder removed) at the end
    try:
        with held, warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            if args.command == "list":
                _list()
            elif args.command == "summarize":
                _summarize(args.folder, args.write, "holomerge-lab " + shlex.join(argv), args.margin)
            elif args.command == "sweep":
                _sweep(args, held)
            elif args.command == "bench":
                _bench(args)
            else:
                _run(args, "holomerge-lab " + shlex.join(argv), _typed(argv), held)
    except UserError as e:
        print(f"holomerge-lab: error: {_message(e, parser)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("holomerge-lab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
