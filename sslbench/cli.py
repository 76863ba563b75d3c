"""Command line: ``sslbench run | eval | ls | leaderboard | compare | report | analyze | status``.

Errors caused by input print one line and exit 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from sslbench.errors import SslbenchError, did_you_mean


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _number(key: str) -> Callable[[str], Any]:
    """An argparse type: the flag's text as an int, checked against the bounds of config key ``key``
    (:data:`sslbench.config.FLAG_RULES`), so ``--epochs 0`` or ``--seed -1`` stop before any work."""

    def convert(text: str) -> int:
        # imported only when the flag is given: sslbench.config pulls in torch
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
    return convert


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
    """argparse, with its errors on one line like every other input error (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"sslbench: error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="sslbench", description="Evaluate self-supervised image embeddings.")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="pretrain methods, evaluate protocols, print the leaderboard")
    r.add_argument("--methods", type=_csv, help="comma-separated methods/variants (default simsiam,vicreg_mod)")
    r.add_argument("--floors", "--references", dest="floors", type=_csv,
                   help="floors to include (default random_init,raw_pixels; '' for none)")
    r.add_argument("--dataset", help="dataset name (default: the preset's)")
    r.add_argument("--data-root", help="where to look for data first (also SSLBENCH_DATA)")
    r.add_argument("--preset", help="smoke | quick (default) | standard | cifar10")
    r.add_argument("--epochs", type=_number("epochs"), help="pretraining epochs of every method (default: the preset's, or a method's own for it)")
    r.add_argument("--seeds", type=_seeds, help="comma-separated seeds (default 0)")
    r.add_argument("--protocols", type=_csv,
                   help="comma-separated protocols (default knn,linear,few_shot,few_shot_transfer,low_shot,collapse)")
    r.add_argument("--transfer", help="dataset of few_shot_transfer (default: the preset's; '' for none)")
    r.add_argument("--out", type=_out, help="output directory (default runs)")
    r.add_argument("--device", help="cpu (default) or cuda")
    r.add_argument("--config", help="TOML config file (preset < file < flags); its [sweeps] tables are grids")
    _run_execution_arguments(r)

    e = sub.add_parser("eval", help="evaluate an external encoder or precomputed features, print the leaderboard")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--encoder", help="TorchScript file, or state dict of a registered backbone (with --arch)")
    src.add_argument("--features", help=".npz with train_x, train_y, test_x, test_y [, transfer_x, transfer_y]")
    e.add_argument("--arch", help="backbone of a state-dict --encoder (see `sslbench ls backbones`)")
    e.add_argument("--width", type=_number("width"), help="width of --arch (default: the backbone's default)")
    e.add_argument("--dataset", help="dataset to extract --encoder features from")
    e.add_argument("--data-root", help="where to look for data first (also SSLBENCH_DATA)")
    e.add_argument("--protocols", type=_csv, help="comma-separated protocols (default: all the inputs allow)")
    e.add_argument("--name", help="leaderboard row name (default: the file stem)")
    e.add_argument("--seed", type=_number("seed"), default=0, help="seed passed to the protocols (default 0)")
    e.add_argument("--out", type=_out, default="runs", help="output directory (default runs)")
    e.add_argument("--device", default="cpu", help="cpu (default) or cuda, for feature extraction")

    ls = sub.add_parser("ls", help="list what is registered")
    ls.add_argument("kind", nargs="?", default="all", help="methods | protocols | datasets | backbones | presets")

    lb = sub.add_parser("leaderboard", help="rebuild the leaderboard from run directories")
    lb.add_argument("dirs", nargs="+", help="run directories (--out of earlier runs)")
    lb.add_argument("--format", default="md", help="what to print: md (default) | csv | json | html")
    lb.add_argument("--write", help="also write leaderboard.{md,csv,json,html} into this directory")
    _grouping_arguments(lb)

    st = sub.add_parser("status", help="where every planned run of OUT stands (done, running, failed, pending) and an ETA")
    st.add_argument("out", type=_out, help="output directory of `sslbench run`")

    from sslbench import compare

    cmp = sub.add_parser("compare", help="regression gate: compare CURRENT against BASELINE (exit 0 pass, 1 regression)")
    compare.add_arguments(cmp)

    rep = sub.add_parser("report", help="write one self-contained HTML report (tables, charts, spectra, curves)")
    rep.add_argument("dirs", nargs="+", help="run directories (--out of earlier runs)")
    rep.add_argument("--out", help="HTML file to write (default DIR/report.html)")
    _grouping_arguments(rep)

    an = sub.add_parser("analyze", help="variant effects vs seed noise, collapse epochs, label-free vs labelled")
    an.add_argument("dirs", nargs="+", help="run directories (--out of earlier runs)")
    an.add_argument("--write", help="also write analysis.{md,json} into this directory")
    _grouping_arguments(an)
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
    }
    cfg = dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    execution = _execution(args)
    failures = run(cfg, execution)
    if execution.dry_run or (execution.kind == "slurm" and not execution.slurm.wait):
        return 0  # nothing ran here yet: `sslbench leaderboard OUT --write OUT` once the tasks are done
    _write_leaderboard(cfg.out)
    return 1 if failures else 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from sslbench.external import EvalConfig, evaluate

    fields = {f.name for f in dataclasses.fields(EvalConfig)}
    failures = evaluate(EvalConfig(**{k: v for k, v in vars(args).items() if k in fields}))
    _write_leaderboard(args.out)
    return 1 if failures else 0


def _write_leaderboard(out: str) -> None:
    """Rebuild the leaderboard of ``out`` from its records, write it, print it (rank 0 only); its
    warnings (mixed data fingerprints or protocol versions) go to stderr too."""
    from sslbench import distributed, leaderboard, leaderboard_render
    from sslbench.layout import RunLayout
    from sslbench.store import find_records

    if not distributed.launched_as_main():
        return
    layout = RunLayout(out)
    board = leaderboard.build(find_records(layout.out))
    for note in board.notes:
        if note.startswith("WARNING"):
            print(f"sslbench: {note}", file=sys.stderr, flush=True)
    print(leaderboard_render.write(board, layout))


def _cmd_ls(args: argparse.Namespace) -> int:
    from sslbench.registry import KINDS, registry

    kinds = KINDS if args.kind == "all" else [args.kind]
    if args.kind != "all" and args.kind not in KINDS:
        raise did_you_mean(args.kind, KINDS, "kind")
    for kind in kinds:
        print(f"{kind}:")
        reg = registry(kind)
        for name in reg.names():
            obj = reg.get(name)
            summary = getattr(obj, "summary", None) or (obj.__doc__ or "").strip().splitlines()[0]
            src = reg.source(name)
            print(f"  {name:<16} {summary}" + ("" if src == "builtin" else f"  [{src}]"))
    return 0


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from sslbench import leaderboard, leaderboard_render
    from sslbench.layout import RunLayout
    from sslbench.store import load_records

    if args.format not in leaderboard_render.FORMATS:
        raise did_you_mean(args.format, leaderboard_render.FORMATS, "leaderboard format")
    board = leaderboard.build(load_records(args.dirs), group_by=args.group_by, sort_by=args.sort_by)
    if args.write:
        leaderboard_render.write(board, RunLayout(args.write))
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sslbench`` console script."""
    args = _parser().parse_args(argv)
    handlers = {"run": _cmd_run, "eval": _cmd_eval, "ls": _cmd_ls, "leaderboard": _cmd_leaderboard,
                "compare": _cmd_compare, "report": _cmd_report, "analyze": _cmd_analyze, "status": _cmd_status}
    try:
        return handlers[args.command](args)
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
        print(f"sslbench: {e or 'interrupted'}; rerun the same command to resume", file=sys.stderr)
        return getattr(e, "exit_code", 130)


if __name__ == "__main__":
    sys.exit(main())
