"""Command line: ``sslbench run | eval | ls | leaderboard | compare | report | analyze``.

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
from sslbench.interrupts import describe, graceful_stop


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
    r.add_argument("--config", help="TOML config file (preset < file < flags)")
    r.add_argument("--split", choices=("test", "val"),
                   help="score on the test split (default) or on a seeded held-out 20%% of train (val), "
                        "for choosing recipes without looking at test")

    e = sub.add_parser("eval", help="evaluate an external encoder or precomputed features, print the leaderboard")
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
    e.add_argument("--name", help="leaderboard row name (default: the file stem)")
    e.add_argument("--seed", type=_number("seed"), default=0, help="seed passed to the protocols (default 0)")
    e.add_argument("--out", type=_out, default="runs", help="output directory (default runs)")
    e.add_argument("--device", default="cpu", help="cpu (default) or cuda, for feature extraction")
    e.add_argument("--split", choices=("test", "val"), default="test",
                   help="score on the test split (default) or on a seeded held-out 20%% of train (val)")

    ls = sub.add_parser("ls", help="list what is registered")
    ls.add_argument("kind", nargs="?", default="all", help="methods | protocols | datasets | backbones | presets")

    lb = sub.add_parser("leaderboard", help="rebuild the leaderboard from run directories")
    lb.add_argument("dirs", nargs="+", help="run directories (--out of earlier runs)")
    lb.add_argument("--format", default="md", help="what to print: md (default) | csv | json | html")
    lb.add_argument("--write", help="also write leaderboard.{md,csv,json,html} into this directory")
    lb.add_argument("--split", choices=("test", "val"), default="test", help="which split's results (default test)")

    from sslbench import compare

    cmp = sub.add_parser("compare", help="regression gate: compare CURRENT against BASELINE (exit 0 pass, 1 regression)")
    compare.add_arguments(cmp)

    rep = sub.add_parser("report", help="write one self-contained HTML report (tables, charts, spectra, curves)")
    rep.add_argument("dirs", nargs="+", help="run directories (--out of earlier runs)")
    rep.add_argument("--out", help="HTML file to write (default DIR/report.html)")

    an = sub.add_parser("analyze", help="variant effects vs seed noise, collapse epochs, label-free vs labelled")
    an.add_argument("dirs", nargs="+", help="run directories (--out of earlier runs)")
    an.add_argument("--write", help="also write analysis.{md,json} into this directory")
    return ap


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
    }
    cfg = dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    failures = run(cfg)
    _write_leaderboard(cfg.out, cfg.split)
    return 1 if failures else 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from sslbench.external import EvalConfig, evaluate

    fields = {f.name for f in dataclasses.fields(EvalConfig)}
    failures = evaluate(EvalConfig(**{k: v for k, v in vars(args).items() if k in fields}))
    _write_leaderboard(args.out, args.split)
    return 1 if failures else 0


def _write_leaderboard(out: str, split: str = "test") -> None:
    """Rebuild the leaderboard of ``out`` from its records, write it, print it (rank 0 only); its
    warnings (mixed data fingerprints or protocol versions) go to stderr too."""
    from sslbench import distributed, leaderboard, leaderboard_render
    from sslbench.layout import RunLayout
    from sslbench.store import find_records

    if not distributed.launched_as_main():
        return
    layout = RunLayout(out)
    board = leaderboard.build(find_records(layout.out, split))
    for note in board.notes:
        if note.startswith("WARNING"):
            print(f"sslbench: {note}", file=sys.stderr, flush=True)
    print(leaderboard_render.write(board, layout, split))


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
    board = leaderboard.build(load_records(args.dirs, args.split))
    if args.write:
        leaderboard_render.write(board, RunLayout(args.write), args.split)
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
    tables = analysis.analyze(dirs)
    print(analysis.write(tables, Path(args.write)) if args.write else analysis.to_markdown(tables), end="")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from sslbench.report import write_report

    print(write_report(args.dirs, args.out))
    return 0


#: OS errors that are the environment's (full disk, permissions), reported in one line like input errors.
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR})


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sslbench`` console script."""
    args = _parser().parse_args(argv)
    handlers = {"run": _cmd_run, "eval": _cmd_eval, "ls": _cmd_ls, "leaderboard": _cmd_leaderboard,
                "compare": _cmd_compare, "report": _cmd_report, "analyze": _cmd_analyze}
    try:
        with graceful_stop():
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
        message, status = describe(e)
        print(f"sslbench: {message}; rerun the same command to resume", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
