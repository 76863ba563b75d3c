"""The run layout: the one owner of every path under ``--out``.

::

    <out>/<method>/seed<k>/config.json              the run's identity (resolved recipe)
    <out>/<method>/seed<k>/checkpoint.pt            last epoch (atomic)
    <out>/<method>/seed<k>/metrics.jsonl            per-epoch training log
    <out>/<method>/seed<k>/monitor.jsonl            the collapse monitor every N steps (``monitor_every``)
    <out>/<method>/seed<k>/train_status.json        how training stopped early (diverged, collapsed)
    <out>/<method>/seed<k>/results/<protocol>.json  one result record per protocol (test split)
    <out>/<method>/seed<k>/results/<protocol>.artifacts.npz
    <out>/<method>/seed<k>/results/val/<protocol>.json   the same, scored on the validation split
    <out>/<method>/seed<k>/failure.json             why the run's last attempt failed (removed when it succeeds)
    <out>/<method>/seed<k>/.run.lock                held while a worker trains or scores the run
    <out>/cache/features/<key>/                     cached features
    <out>/manifest.json, <out>/.manifest.lock, <out>/.sslbench.lock
    <out>/plan.json                                 every run planned on this directory (``sslbench status``)
    <out>/bisect/<sweep>.json                       a boundary search's brackets (:mod:`sslbench.bisect_sweep`)
    <out>/.submitit/                                submitit's job files and logs (``--executor slurm``)
    <out>/leaderboard.{md,csv,json,html} (leaderboard.val.* for --split val), report.html, analysis.{md,json}

Nothing else builds these paths: commands, readers and tests ask a
:class:`RunLayout`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sslbench.errors import SslbenchError
from sslbench.lock import RUN_LOCK_NAME

#: A name that becomes one path component under ``--out``: no separators, no ``.``/``..``,
#: no hidden files.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
#: Names taken by sslbench's own entries under ``--out``.
RESERVED_NAMES = frozenset({"cache", "bisect", "manifest.json", "plan.json", "report.html", "analysis.md", "analysis.json",
                            *(f"leaderboard{s}.{ext}" for s in ("", ".val") for ext in ("md", "csv", "json", "html"))})
_SEED_DIR = re.compile(r"seed(\d+)")


def check_path_name(name: object, what: str) -> str:
    """Check that ``name`` can be one path component under the output directory.

    Args:
        name: A method, variant or protocol name (from a config file or a plugin).
        what: What it names, for the message (e.g. ``"variant name"``).

    Returns:
        ``name``.

    Raises:
        SslbenchError: for anything but letters, digits, ``.``, ``_``, ``+``, ``-``
            starting with a letter or digit (so no ``/``, ``..`` or hidden files), or a
            reserved name.
    """
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise SslbenchError(
            f"{what} {name!r} cannot be used: it names a directory under --out, so it must be 1-128 "
            "letters, digits, '.', '_', '+' or '-', start with a letter or digit, and not be one of "
            "sslbench's own entries there (cache, manifest.json, plan.json, leaderboard.*, report.html, analysis.*); rename it"
        )
    return name


@dataclass(frozen=True)
class RunPaths:
    """The files of one ``(method, seed)`` run directory.

    Attributes:
        dir: ``<out>/<method>/seed<k>``.
        method: The row name.
        seed: The seed.
    """

    dir: Path
    method: str
    seed: int

    @property
    def label(self) -> str:
        """``method/seed<k>``, the run's name in messages."""
        return f"{self.method}/seed{self.seed}"

    @property
    def config(self) -> Path:
        """The run's identity, ``config.json``."""
        return self.dir / "config.json"

    @property
    def checkpoint(self) -> Path:
        """The last epoch's training checkpoint."""
        return self.dir / "checkpoint.pt"

    @property
    def metrics_log(self) -> Path:
        """The per-epoch training log (:mod:`sslbench.training_log`)."""
        return self.dir / "metrics.jsonl"

    @property
    def monitor_log(self) -> Path:
        """The collapse monitor's readings every ``monitor_every`` steps (:mod:`sslbench.training_log`)."""
        return self.dir / "monitor.jsonl"

    @property
    def train_status(self) -> Path:
        """How training stopped early (diverged or collapsed), when it did."""
        return self.dir / "train_status.json"

    @property
    def failure(self) -> Path:
        """Why the run's last attempt failed (:mod:`sslbench.status` reads it)."""
        return self.dir / "failure.json"

    @property
    def lock(self) -> Path:
        """The run lock (:mod:`sslbench.lock`), held while a worker trains or scores the run."""
        return self.dir / RUN_LOCK_NAME

    @property
    def results_dir(self) -> Path:
        """Where the result records of the test split live (those of ``val`` in ``val/`` below it)."""
        return self.dir / "results"

    def result(self, protocol: str, split: str = "test") -> Path:
        """The result record of ``protocol`` on ``split``.

        Raises:
            SslbenchError: when ``protocol`` is not a safe path component.
        """
        return _split_dir(self.results_dir, split) / f"{check_path_name(protocol, 'protocol name')}.json"

    def artifacts(self, protocol: str, split: str = "test") -> Path:
        """The artifacts ``.npz`` written beside the result of ``protocol``."""
        return self.result(protocol, split).with_suffix(".artifacts.npz")

    def result_files(self, split: str = "test") -> list[Path]:
        """The result records of ``split`` present, sorted by path."""
        return sorted(_split_dir(self.results_dir, split).glob("*.json"))

    def holds_state(self) -> bool:
        """Whether anything computed lives here (a checkpoint or a result of any split)."""
        return self.checkpoint.exists() or bool(self.result_files()) or bool(self.result_files("val"))


def _split_dir(results: Path, split: str) -> Path:
    if split == "test":
        return results
    if split == "val":
        return results / "val"
    raise SslbenchError(f"unknown split {split!r}; use 'test' or 'val'")


class RunLayout:
    """Paths under one output directory.

    Args:
        out: The output directory (``--out``).
    """

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)

    def run(self, method: str, seed: int) -> RunPaths:
        """The run directory of ``(method, seed)``.

        Raises:
            SslbenchError: when ``method`` is not a safe path component or ``seed`` not an int.
        """
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise SslbenchError(f"seed must be an integer, got {seed!r}")
        return RunPaths(self.out / check_path_name(method, "method name") / f"seed{seed}", method, seed)

    def runs(self) -> list[RunPaths]:
        """Every run directory that holds result records, sorted by method then seed."""
        found = []
        for d in sorted(self.out.glob("*/seed*/results")):
            m = _SEED_DIR.fullmatch(d.parent.name)
            if m and d.is_dir() and SAFE_NAME.fullmatch(d.parent.parent.name):
                found.append(RunPaths(d.parent, d.parent.parent.name, int(m.group(1))))
        return sorted(found, key=lambda r: (r.method, r.seed))

    def result_files(self, split: str = "test") -> list[Path]:
        """Every result record of ``split`` under ``out``, sorted by path."""
        pattern = "*/seed*/results/*.json" if split == "test" else f"*/seed*/results/{split}/*.json"
        return sorted(self.out.glob(pattern))

    @property
    def cache(self) -> Path:
        """The feature cache."""
        return self.out / "cache" / "features"

    @property
    def manifest(self) -> Path:
        """The history of invocations (:mod:`sslbench.manifest`)."""
        return self.out / "manifest.json"

    @property
    def lock(self) -> Path:
        """The lock file of the output directory (:mod:`sslbench.lock`)."""
        return self.out / ".sslbench.lock"

    @property
    def manifest_lock(self) -> Path:
        """The lock of the manifest's and the plan's read-modify-write (:func:`sslbench.lock.locked_file`)."""
        return self.out / ".manifest.lock"

    @property
    def plan(self) -> Path:
        """Every run planned on this directory, with what makes it current (:mod:`sslbench.manifest`)."""
        return self.out / "plan.json"

    def bisect(self, sweep: str) -> Path:
        """The brackets of the boundary search ``sweep`` (:mod:`sslbench.bisect_sweep`).

        Raises:
            SslbenchError: when ``sweep`` is not a safe path component.
        """
        return self.out / "bisect" / f"{check_path_name(sweep, 'sweep name')}.json"

    @property
    def submitit(self) -> Path:
        """submitit's job files and logs (``sslbench run --executor slurm``)."""
        return self.out / ".submitit"

    def leaderboard(self, ext: str, split: str = "test") -> Path:
        """``leaderboard.<ext>`` (``leaderboard.val.<ext>`` for the validation split)."""
        return self.out / (f"leaderboard.{ext}" if split == "test" else f"leaderboard.{split}.{ext}")

    def analysis(self, ext: str) -> Path:
        """``analysis.<ext>``."""
        return self.out / f"analysis.{ext}"

    @property
    def report(self) -> Path:
        """The HTML report."""
        return self.out / "report.html"
