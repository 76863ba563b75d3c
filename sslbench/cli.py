"""Command line: ``sslbench run | eval | ls | leaderboard | compare | report | analyze | atlas | status``.

Errors caused by input print one line and exit 2 (``--debug``, before or after the
command, shows the traceback).

Start-up is cheap: parsing the arguments, printing help and checking the names
given on the command line (methods, floors, protocols, datasets, backbones,
presets) import neither torch nor any method, protocol or plugin; the registry
knows built-in names as strings and plugin names from their packages' metadata.
A number flag is checked after the names (its bounds live in
:mod:`sslbench.config`, which imports torch), so a misspelt name fails first and
fast. Each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from sslbench.errors import SslbenchError, did_you_mean
from sslbench.interrupts import describe, graceful_stop


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


class _Later(NamedTuple):
    """A flag's text whose check imports :mod:`sslbench.config` (and so torch): argparse keeps it as
    it is and :func:`_convert_later` converts it once the names on the command line are checked.

    Attributes:
        convert: The argparse type that converts (raising ``argparse.ArgumentTypeError``).
        text: The flag's text.
    """

    convert: Callable[[str], Any]
    text: str


def _later(convert: Callable[[str], Any]) -> Callable[[str], _Later]:
    """An argparse type that defers ``convert`` (see :class:`_Later`)."""

    def keep(text: str) -> _Later:
        return _Later(convert, text)

    keep.__name__ = convert.__name__
    return keep


def _convert_later(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Convert every deferred flag value of ``args`` in place; a bad one is ``parser``'s one-line error."""
    for action in parser._actions:  # argparse has no public list of a parser's arguments
        value = getattr(args, action.dest, None)
        if isinstance(value, _Later):
            try:
                setattr(args, action.dest, value.convert(value.text))
            except argparse.ArgumentTypeError as e:
                parser.error(f"argument {'/'.join(action.option_strings)}: {e}")


def _number(key: str) -> Callable[[str], Any]:
    """An argparse type: the flag's text as an int, checked against the bounds of config key ``key``
    (:data:`sslbench.config.FLAG_RULES`), so ``--epochs 0`` or ``--seed -1`` stop before any work.
    The check runs after argument parsing (:class:`_Later`): sslbench.config imports torch."""

    def convert(text: str) -> int:
        from sslbench.config import parse_number, value_problem

        try:
            value = parse_number(text, int)
        except ValueError:
            value = text  # not a number: the bound's message says what is wanted
        why = value_problem(key, value)
        if why:
            raise argparse.ArgumentTypeError(why)
        return value

    convert.__name__ = key
    return _later(convert)


def _seeds(text: str) -> list[int]:
    from sslbench.config import parse_number, value_problem

    seeds: list[Any] = []
    for s in _csv(text):
        try:
            seeds.append(parse_number(s, int))
        except ValueError:
            seeds.append(s)
    why = value_problem("seeds", seeds)
    if why:
        raise argparse.ArgumentTypeError(why)
    return seeds


def _out(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty (that would be the current directory); give a directory")
    return text


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other input error (no usage block).

    Attributes:
        commands: Command word -> its parser (on the top-level parser).
    """

    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"sslbench: error: {message} (see `{self.prog} --help`)\n")


def _command_of(argv: list[str]) -> str | None:
    """The command word of ``argv``: its first argument that is not an option (``--debug`` takes no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _parser(command: str | None = None) -> _Parser:
    """The argument parser. ``compare``'s own arguments are added only when ``command`` is
    ``compare``: their defaults live in :mod:`sslbench.compare`, which imports pandas."""
    ap = _Parser(prog="sslbench", description="Evaluate self-supervised image embeddings.")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    debug = argparse.ArgumentParser(add_help=False)  # --debug after the command word too, without resetting it
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub = ap.add_subparsers(dest="command", required=True)
    ap.commands = sub.choices

    def command_parser(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".", parents=[debug])

    r = command_parser("run", "pretrain methods, evaluate protocols, print the leaderboard")
    r.add_argument("--methods", type=_csv, help="comma-separated methods/variants (default simsiam,vicreg_mod)")
    r.add_argument("--floors", "--references", dest="floors", type=_csv,
                   help="floors to include (default random_init,raw_pixels; '' for none)")
    r.add_argument("--dataset", help="dataset name (default: the preset's)")
    r.add_argument("--data-root", help="where to look for data first (also SSLBENCH_DATA)")
    r.add_argument("--preset", help="smoke | quick (default) | standard | cifar10")
    r.add_argument("--epochs", type=_number("epochs"), help="pretraining epochs of every method (default: the preset's, or a method's own for it)")
    r.add_argument("--seeds", type=_later(_seeds), help="comma-separated seeds (default 0)")
    r.add_argument("--protocols", type=_csv,
                   help="comma-separated protocols (default knn,linear,few_shot,few_shot_transfer,low_shot,collapse)")
    r.add_argument("--protocol-set", help="a named protocol set instead of --protocols: full | sweep "
                   "(sslbench ls protocol_sets)")
    r.add_argument("--transfer", help="dataset of few_shot_transfer (default: the preset's; '' for none)")
    r.add_argument("--out", type=_out, help="output directory (default runs)")
    r.add_argument("--device", help="cpu (default) or cuda")
    r.add_argument("--config", help="TOML config file (preset < file < flags); its [sweeps] tables are grids")
    r.add_argument("--monitor-every", type=_number("monitor_every"),
                   help="read the collapse monitor every N optimiser steps into each run's monitor.jsonl "
                        "(default 0: after every epoch only); changes nothing that is trained")
    _run_execution_arguments(r)
    r.add_argument("--split", choices=("test", "val"),
                   help="score on the test split (default) or on a seeded held-out 20%% of train (val), "
                        "for choosing recipes without looking at test")

    e = command_parser("eval", "evaluate an external encoder or precomputed features, print the leaderboard")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--encoder", help="TorchScript file, or state dict of a registered backbone (with --arch)")
    src.add_argument("--features", help=".npz with train_x, train_y, test_x, test_y [, transfer_x, transfer_y]")
    e.add_argument("--arch", help="architecture of a checkpoint --encoder: a registered backbone (`sslbench ls "
                                  "backbones`), torchvision:NAME or timm:NAME")
    e.add_argument("--width", type=_number("width"), help="width of --arch (default: the backbone's default)")
    e.add_argument("--key-prefix", help="key prefix of the backbone weights in a checkpoint whose layout sslbench "
                                        "does not recognise (e.g. 'state_dict.module.encoder.')")
    e.add_argument("--image-size", type=_number("width"), help="resize and centre-crop the images to this side "
                                                             "(e.g. 224 for an ImageNet model)")
    e.add_argument("--resize", type=_number("width"), help="shorter side before that crop (default --image-size)")
    e.add_argument("--normalize", default="dataset",
                   help="input normalisation: dataset (default), imagenet, none, or MEAN,STD numbers")
    e.add_argument("--dataset", help="dataset to extract --encoder features from")
    e.add_argument("--data-root", help="where to look for data first (also SSLBENCH_DATA)")
    e.add_argument("--protocols", type=_csv, help="comma-separated protocols (default: all the inputs allow)")
    e.add_argument("--protocol-set", help="a named protocol set instead of --protocols: full | sweep")
    e.add_argument("--name", help="leaderboard row name (default: the file stem)")
    e.add_argument("--seed", type=_number("seed"), default=0, help="seed passed to the protocols (default 0)")
    e.add_argument("--out", type=_out, default="runs", help="output directory (default runs)")
    e.add_argument("--device", default="cpu", help="cpu (default) or cuda, for feature extraction")
    e.add_argument("--split", choices=("test", "val"), default="test",
                   help="score on the test split (default) or on a seeded held-out 20%% of train (val)")

    ls = command_parser("ls", "list what is registered")
    ls.add_argument("kind", nargs="?", default="all", help="methods | protocols | protocol_sets | datasets | backbones | presets")

    lb = command_parser("leaderboard", "rebuild the leaderboard from run directories")
    lb.add_argument("dirs", nargs="+", help="run directories (--out of earlier runs)")
    lb.add_argument("--format", default="md",
                    help="what to print: md (default; the compact view) | csv | json | html (every column, as the files)")
    lb.add_argument("--all", action="store_true",
                    help="with md: every column, the floor deltas and the notes (as leaderboard.md)")
    lb.add_argument("--write", help="also write leaderboard.{md,csv,json,html} into this directory")
    lb.add_argument("--split", choices=("test", "val"), default="test", help="which split's results (default test)")
    _grouping_arguments(lb)

    st = sub.add_parser("status", help="where every planned run of OUT stands (done, running, failed, pending) and an ETA")
    st.add_argument("out", type=_out, help="output directory of `sslbench run`")

    cmp = command_parser("compare", "regression gate: compare CURRENT against BASELINE (exit 0 pass, 1 regression)")
    if command == "compare":
        from sslbench import compare

        compare.add_arguments(cmp)

    rep = command_parser("report", "write one self-contained HTML report (tables, charts, spectra, curves)")
    rep.add_argument("dirs", nargs="+", help="run directories (--out of earlier runs)")
    rep.add_argument("--out", help="HTML file to write (default DIR/report.html)")
    _grouping_arguments(rep)

    an = command_parser("analyze", "variant effects vs seed noise, collapse epochs, label-free vs labelled")
    an.add_argument("dirs", nargs="+", help="run directories (--out of earlier runs)")
    an.add_argument("--write", help="also write analysis.{md,json} into this directory")
    _grouping_arguments(an)

    at = command_parser("atlas", "the collapse atlas of sweeps: per-cell collapse odds, boundaries, interactions, "
                                 "label-free agreement, early call")
    at.add_argument("dirs", nargs="+", help="output directories of `sslbench run --config` with [sweeps]")
    at.add_argument("--write", help="write atlas.md, atlas.json and the figures (dose-*.png, phase-*.png) here "
                                    "(default: print the markdown)")
    at.add_argument("--split", choices=("test", "val"), default="test", help="which split's results (default test)")
    return ap


def _run_execution_arguments(r: argparse.ArgumentParser) -> None:
    """``sslbench run``'s flags of how the plan executes (:class:`sslbench.executors.Execution`)."""
    x = r.add_argument_group("execution (sweeps)")
    x.add_argument("--jobs", type=_number("jobs"), default=1,
                   help="worker processes on this machine, one run each at a time (default 1)")
    x.add_argument("--threads-per-job", type=_number("threads"),
                   help="torch threads per run (default: cores/--jobs; recorded in each result's run_config)")
    x.add_argument("--executor", choices=["sequential", "local", "slurm"],
                   help="where runs go: this process, --jobs local workers, or Slurm job arrays through submitit "
                        "(default: local when --jobs > 1, else sequential)")
    x.add_argument("--dry-run", action="store_true", help="list the runs, what is already done and the cost; run nothing")
    x.add_argument("--max-runs", type=_number("max_runs"), default=None,
                   help="refuse a plan of more runs than this (default 1000)")
    s = r.add_argument_group("slurm (--executor slurm; pip install 'sslbench[slurm]')")
    s.add_argument("--partition", help="Slurm partition (default: the cluster's)")
    s.add_argument("--time", type=_number("count"), dest="time_min", default=240, help="time limit per task, minutes (default 240)")
    s.add_argument("--cpus-per-task", type=_number("threads"), default=4, help="CPUs per task (default 4)")
    s.add_argument("--gpus-per-task", type=_number("gpus"), default=0, help="GPUs per task (default 0)")
    s.add_argument("--mem-gb", type=float, help="memory per task, GB (default: the partition's)")
    s.add_argument("--array-parallelism", type=_number("count"), default=256,
                   help="most array tasks running at once (default 256)")
    s.add_argument("--runs-per-task", type=_number("count"), default=4,
                   help="runs packed into one array task, run one after another (default 4)")
    s.add_argument("--submitit-cluster", choices=["slurm", "local"], default="slurm",
                   help="slurm (default), or local: submitit's local executor (real subprocesses here; for tests)")
    s.add_argument("--wait", action="store_true", help="wait for every task, then write the leaderboard")


def _grouping_arguments(p: argparse.ArgumentParser) -> None:
    """``--group-by`` and ``--sort-by``: rows per sweep coordinate (:func:`sslbench.leaderboard.build`)."""
    p.add_argument("--group-by", type=_csv, help="sweep axes to group rows by, e.g. loss.var_coeff or var_coeff,proj_dim "
                                                 "(each group pools its runs: cells x seeds)")
    p.add_argument("--sort-by", help="a sweep axis or a metric column to order rows by (axes ascending, "
                                     "metrics best first)")


def _execution(args: argparse.Namespace) -> Any:
    from sslbench.config import MAX_RUNS
    from sslbench.executors import Execution, SlurmOptions

    slurm = SlurmOptions(partition=args.partition, time_min=args.time_min, cpus_per_task=args.cpus_per_task,
                         gpus_per_task=args.gpus_per_task, mem_gb=args.mem_gb, array_parallelism=args.array_parallelism,
                         runs_per_task=args.runs_per_task, cluster=args.submitit_cluster, wait=args.wait)
    return Execution(executor=args.executor, jobs=args.jobs, threads_per_job=args.threads_per_job,
                     max_runs=args.max_runs or MAX_RUNS, dry_run=args.dry_run, slurm=slurm)


def _cmd_run(args: argparse.Namespace) -> int:
    from sslbench.config import RunConfig, load_toml
    from sslbench.runner import run

    cfg = RunConfig()
    if args.config:
        cfg = load_toml(args.config, cfg)
    flags = {
        "methods": args.methods,
        "floors": args.floors,
        "dataset": args.dataset,
        "data_root": args.data_root,
        "preset": args.preset,
        "epochs": args.epochs,
        "seeds": args.seeds,
        "protocols": args.protocols,
        "transfer": args.transfer,
        "out": args.out,
        "device": args.device,
        "split": args.split,
        "monitor_every": args.monitor_every,
        "protocol_set": args.protocol_set,
    }
    _one_protocol_choice(args)
    cfg = dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    if args.protocols is not None:
        cfg = dataclasses.replace(cfg, protocol_set=None)  # the flag's list wins over a config file's set
    execution = _execution(args)
    failures = run(cfg, execution)
    if execution.dry_run or (execution.kind == "slurm" and not execution.slurm.wait):
        return 0  # nothing ran here yet: `sslbench leaderboard OUT --write OUT` once the tasks are done
    _write_leaderboard(cfg.out, cfg.split)
    return 1 if failures else 0


def _one_protocol_choice(args: argparse.Namespace) -> None:
    """``run`` and ``eval`` take a protocol list or a protocol set, not both."""
    if args.protocols is not None and args.protocol_set is not None:
        raise SslbenchError("give --protocols or --protocol-set, not both")


def _cmd_eval(args: argparse.Namespace) -> int:
    from sslbench.external import EvalConfig, evaluate

    _one_protocol_choice(args)
    fields = {f.name for f in dataclasses.fields(EvalConfig)}
    failures = evaluate(EvalConfig(**{k: v for k, v in vars(args).items() if k in fields}))
    _write_leaderboard(args.out, args.split)
    return 1 if failures else 0


def _warn(board: Any) -> None:
    """Print the leaderboard's warnings (mixed data fingerprints or protocol versions, runs read
    twice) on stderr, whatever is printed on stdout."""
    for note in board.notes:
        if note.startswith("WARNING"):
            print(f"sslbench: {note}", file=sys.stderr, flush=True)


def _write_leaderboard(out: str, split: str = "test") -> None:
    """Rebuild the leaderboard of ``out`` from its records, write its files, print the compact view
    (rank 0 only); its warnings go to stderr."""
    from sslbench import distributed, leaderboard, leaderboard_render
    from sslbench.layout import RunLayout
    from sslbench.store import find_records

    if not distributed.launched_as_main():
        return
    layout = RunLayout(out)
    board = leaderboard.build(find_records(layout.out, split))
    _warn(board)
    leaderboard_render.write(board, layout, split)
    print(leaderboard_render.to_compact(board, f"every column: {layout.leaderboard('md', split)}"), end="")


#: Namespace attributes holding registry names, and the registry they name (checked before any import).
_NAME_FLAGS = {"methods": "methods", "floors": "methods", "protocols": "protocols", "protocol_set": "protocol_sets",
               "dataset": "datasets", "transfer": "datasets", "preset": "presets", "arch": "backbones"}


#: ``--arch`` prefixes naming another library's architecture (checked when built, as
#: :mod:`sslbench.backbones` imports torch).
_EXTERNAL_ARCHS = ("torchvision:", "timm:")


def _check_names(args: argparse.Namespace) -> None:
    """Check the registry names ``run`` and ``eval`` were given, importing none of them.

    A dataset given as ``NAME:PATH`` (``imagefolder:DIR``) is checked by its ``NAME``.

    Raises:
        SslbenchError: for an unknown name, with a "did you mean".
    """
    from sslbench.registry import registry

    if args.command not in ("run", "eval"):
        return
    for attr, kind in _NAME_FLAGS.items():
        value = getattr(args, attr, None)
        for name in [value] if isinstance(value, str) else value or []:
            if name and not (kind == "backbones" and name.startswith(_EXTERNAL_ARCHS)):
                registry(kind).check(name.partition(":")[0] if kind == "datasets" else name)


def _ls_summary(reg: Any, name: str) -> str:
    """The summary ``ls`` shows; a plugin that cannot be loaded says why instead of ending the listing."""
    try:
        return reg.summary(name)
    except Exception as e:  # noqa: BLE001 - a broken plugin is listed, not fatal
        return f"(cannot be loaded: {type(e).__name__}: {' '.join(str(e).split())})"


def _cmd_ls(args: argparse.Namespace) -> int:
    from sslbench.registry import KINDS, registry

    kinds = KINDS if args.kind == "all" else [args.kind]
    if args.kind != "all" and args.kind not in KINDS:
        raise did_you_mean(args.kind, KINDS, "kind")
    for kind in kinds:
        print(f"{kind}:")
        reg = registry(kind)
        names = reg.names()
        width = max(map(len, names), default=0)
        for name in names:
            src = reg.source(name)
            print(f"  {name:<{width}}  {_ls_summary(reg, name)}" + ("" if src == "builtin" else f"  [{src}]"))
    return 0


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from sslbench import leaderboard, leaderboard_render
    from sslbench.layout import RunLayout
    from sslbench.store import load_records

    if args.format not in leaderboard_render.FORMATS:
        raise did_you_mean(args.format, leaderboard_render.FORMATS, "leaderboard format")
    board = leaderboard.build(load_records(args.dirs, args.split), group_by=args.group_by, sort_by=args.sort_by)
    _warn(board)
    if args.write:
        leaderboard_render.write(board, RunLayout(args.write), args.split)
    if args.format == "md" and not args.all:
        print(leaderboard_render.to_compact(board, "every column: add --all"), end="")
    else:
        print(leaderboard_render.render(board, args.format), end="")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from sslbench import compare

    return compare.run_cli(args)


def _cmd_analyze(args: argparse.Namespace) -> int:
    from sslbench import analysis

    dirs = [Path(d) for d in args.dirs]
    for d in dirs:
        if not d.is_dir():
            raise SslbenchError(f"{d} is not a directory")
    tables = analysis.analyze(dirs, group_by=args.group_by, sort_by=args.sort_by)
    print(analysis.write(tables, Path(args.write)) if args.write else analysis.to_markdown(tables), end="")
    return 0


def _cmd_atlas(args: argparse.Namespace) -> int:
    from sslbench.atlas.build import build_atlas
    from sslbench.atlas.render import to_markdown

    atlas = build_atlas(args.dirs, args.split)
    if not args.write:
        print(to_markdown(atlas), end="")
        return 0
    from sslbench.atlas.write import write_atlas

    written = write_atlas(atlas, args.write)
    figures = [p.name for p in written if p.suffix == ".png"]
    print(f"wrote {written[0]}, {written[1]} and {len(figures)} figures ({', '.join(figures) or 'none'})")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from sslbench.report import write_report

    print(write_report(args.dirs, args.out, group_by=args.group_by, sort_by=args.sort_by))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from sslbench.status import status_report

    print(status_report(args.out), end="")
    return 0


#: OS errors that are the environment's (full disk, permissions), reported in one line like input errors.
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR})


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: its reader has gone (``sslbench ls | head``), and the
    interpreter's last flush must not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no file (captured in a test)
        pass


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sslbench`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = _parser(_command_of(argv))
    args = ap.parse_args(argv)
    args.debug = getattr(args, "debug", False)
    handlers = {"run": _cmd_run, "eval": _cmd_eval, "ls": _cmd_ls, "leaderboard": _cmd_leaderboard,
                "compare": _cmd_compare, "report": _cmd_report, "analyze": _cmd_analyze, "atlas": _cmd_atlas,
                "status": _cmd_status}
    try:
        _check_names(args)
        _convert_later(ap.commands[args.command], args)
        with graceful_stop():
            rc = handlers[args.command](args)
        sys.stdout.flush()  # a closed pipe is raised here, not at the interpreter's exit
        return rc
    except BrokenPipeError:
        _quiet_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away
    except SslbenchError as e:
        if args.debug:
            raise
        print(f"sslbench: error: {' '.join(str(e).splitlines())}", file=sys.stderr)
        return 2
    except OSError as e:
        if args.debug or e.errno not in _OUTPUT_ERRNOS:
            raise
        from sslbench.io import (
            output_error,  # a write that bypassed sslbench.io: still one line
        )

        print(f"sslbench: error: {output_error(e.filename or '?', e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        message, status = describe(e)
        print(f"sslbench: {message}; rerun the same command to resume", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
