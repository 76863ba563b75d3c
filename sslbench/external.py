"""``sslbench eval``: evaluate any encoder, or precomputed features, with the registered protocols.

Two inputs, one output:

- ``--encoder PATH`` with ``--dataset NAME``: a TorchScript file or a state dict
  of a registered backbone (:mod:`sslbench.encoders`); features are extracted
  from the dataset's train and test splits.
- ``--features FILE.npz``: precomputed features (:mod:`sslbench.feature_files`).

Each protocol whose requirements the inputs meet writes the same result JSON
as ``sslbench run`` into ``<out>/<name>/seed<seed>/results/<protocol>.json``
(``encoder_kind`` ``"external"``), so the leaderboard compares external
encoders with trained methods and references in the same ``--out``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sslbench import leaderboard, protocol
from sslbench.data import load_dataset
from sslbench.encoders import encoder_features, file_sha256, load_encoder
from sslbench.errors import SslbenchError
from sslbench.feature_files import load_features
from sslbench.features import encoder_hash
from sslbench.io import atomic_write_json
from sslbench.lock import RunLock
from sslbench.protocol import Protocol
from sslbench.registry import registry
from sslbench.store import (
    SCHEMA_VERSION,
    find_results,
    protocol_info,
    result_is_current,
    result_path,
    run_dir,
    versions,
    write_result,
)

ENCODER_KIND = "external"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_VOLATILE = frozenset({"encoder_path", "features_path", "encoder_file_sha256"})  # not part of the identity
_WHY = {
    "transfer": "it requires a transfer split (transfer_x/transfer_y in a --features file)",
    "encoder": "it requires the encoder itself (use --encoder, not --features)",
    "labels": "it requires labels",
}


@dataclass
class EvalConfig:
    """What ``sslbench eval`` was asked to do (recorded in every result as ``run_config``).

    Attributes:
        encoder: TorchScript or state-dict file; exclusive with ``features``.
        arch: Registered backbone of a state dict.
        width: Its width (default: the backbone's own default).
        dataset: Dataset to extract features from (with ``encoder``).
        data_root: Where to look for the dataset first.
        features: ``.npz`` file of precomputed features; exclusive with ``encoder``.
        protocols: Protocols to run (default: every registered one the inputs allow).
        name: Row name in the leaderboard (default: the file stem).
        seed: Seed passed to the protocols.
        out: Output directory.
        device: Where to extract features (``cpu`` or ``cuda``).
    """

    encoder: str | None = None
    arch: str | None = None
    width: int | None = None
    dataset: str | None = None
    data_root: str | None = None
    features: str | None = None
    protocols: list[str] | None = None
    name: str | None = None
    seed: int = 0
    out: str = "runs"
    device: str = "cpu"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- protocols and results


def select_protocols(names: list[str] | None, available: set[str]) -> list[Protocol]:
    """The protocols to run: ``names`` (default: all registered), minus those whose
    requirements ``available`` does not meet (each skip logged with the reason)."""
    if names is not None and not names:
        raise SslbenchError("--protocols is empty; name at least one (see `sslbench ls protocols`)")
    chosen, skipped = protocol.select_protocols(registry("protocols").names() if names is None else names,
                                                available, why=_WHY)
    for msg in skipped:
        _log(msg)
    return chosen


def _check_eval_dir(rdir: Path, record: dict[str, Any]) -> None:
    """Refuse to mix results of a different encoder/features (or a ``run``) into a run directory
    that already holds results; file paths and bytes may differ, the weights or arrays may not."""
    path = rdir / "config.json"
    if not path.exists() or not any((rdir / "results").glob("*.json")):
        return
    old = json.loads(path.read_text())
    new = json.loads(json.dumps(record))
    diff = sorted(k for k in set(old) | set(new) if k not in _VOLATILE and old.get(k) != new.get(k))
    if diff:
        raise SslbenchError(f"{rdir} holds results of a different run or evaluation (differs in: "
                            f"{', '.join(diff)}); use another --name or --out, or delete that directory")


def evaluate(cfg: EvalConfig) -> int:
    """Evaluate an external encoder or a features file, write results, print the leaderboard.

    Returns:
        The number of protocols that failed with a reported error (0 when all ran).

    Raises:
        SslbenchError: for bad inputs (files, names, arguments), before anything is written;
            also when another ``sslbench run``/``eval`` holds the output directory's lock.
    """
    lock = RunLock(cfg.out)  # taken once the inputs are checked, before the first write
    try:
        return _evaluate(cfg, lock)
    finally:
        lock.release()


def _evaluate(cfg: EvalConfig, lock: RunLock) -> int:
    """:func:`evaluate`, taking ``lock`` before it writes anything."""
    if (cfg.encoder is None) == (cfg.features is None):
        raise SslbenchError("give exactly one of --encoder or --features")
    if cfg.features is not None:
        extra = [f for f, v in (("--arch", cfg.arch), ("--width", cfg.width), ("--dataset", cfg.dataset),
                                ("--data-root", cfg.data_root)) if v is not None]
        if extra:
            raise SslbenchError(f"{', '.join(extra)} go(es) with --encoder, not --features")
    elif not cfg.dataset:
        raise SslbenchError("--encoder needs --dataset (the images to extract features from)")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise SslbenchError("--device cuda was asked for, but torch sees no CUDA device")
    src = Path(cfg.encoder or cfg.features)  # type: ignore[arg-type]
    name = cfg.name or src.stem
    if not _NAME.fullmatch(name) or name == "cache":
        raise SslbenchError(f"--name {name!r} must be one path component of letters, digits, '.', '_', '+', '-' "
                            "(and not 'cache')")
    out = Path(cfg.out)
    for n in cfg.protocols or []:
        registry("protocols").get(n)  # an unknown name fails before any loading ("did you mean")

    t0 = time.perf_counter()
    if cfg.features is not None:
        features, fp = load_features(src)
        available = {"labels"} | ({"transfer"} if "transfer_x" in features.extra else set())
        dataset = {"name": f"features:{src.name}", "fingerprint": fp, "source": str(src),
                   "n_train": len(features.train_x), "n_test": len(features.test_x)}
        if "transfer_x" in features.extra:
            dataset["n_transfer"] = len(features.extra["transfer_x"])
        record = {"method": name, "encoder_kind": ENCODER_KIND, "input": "features", "features_path": str(src),
                  "features_fingerprint": fp, "seed": cfg.seed}
        enc_hash, encoder, data = None, None, None
        protocols = select_protocols(cfg.protocols, available)
    else:
        data = load_dataset(cfg.dataset, cfg.data_root)  # type: ignore[arg-type]
        encoder, info = load_encoder(src, cfg.arch, cfg.width, data.channels)
        file_hash = file_sha256(src)
        # TorchScript carries code as well as weights: its identity is the file
        enc_hash = file_hash if info["format"] == "torchscript" else encoder_hash(encoder)
        dataset = {"name": data.name, "fingerprint": data.fingerprint, "source": data.source,
                   "n_train": int(data.train_images.shape[0]), "n_test": int(data.test_images.shape[0])}
        record = {"method": name, "encoder_kind": ENCODER_KIND, "input": "encoder", "encoder_path": str(src),
                  "encoder_format": info["format"], "encoder_hash": enc_hash, "encoder_file_sha256": file_hash,
                  "arch": info["arch"], "width": info["width"], "dataset": data.name, "seed": cfg.seed}
        protocols = select_protocols(cfg.protocols, {"labels", "encoder"})
    if not protocols:
        raise SslbenchError("no protocol to run: every requested protocol needs inputs this evaluation lacks")

    if lock.acquire().taken_over:
        _log(f"sslbench: {lock.taken_over}")
    rdir = run_dir(out, name, cfg.seed)
    _check_eval_dir(rdir, record)
    todo = [p for p in protocols if not result_is_current(result_path(out, name, cfg.seed, p.name), p, enc_hash)]
    for p in protocols:
        if p not in todo:
            _log(f"{name}/seed{cfg.seed}: {p.name} result present, skipped")
    if todo and encoder is not None:
        _log(f"{name}: extracting features of {src.name} on {data.name} ({cfg.device})")  # type: ignore[union-attr]
        features = encoder_features(encoder, data, cfg.device, src)  # type: ignore[arg-type]
    features_s = time.perf_counter() - t0
    if todo:
        atomic_write_json(rdir / "config.json", record)

    common = {
        "schema_version": SCHEMA_VERSION,
        "method": name,
        "base": None,
        "encoder_kind": ENCODER_KIND,
        "loss_changes": {},
        "seed": cfg.seed,
        "config": record,
        "run_config": dataclasses.asdict(cfg),
        "dataset": dataset,
        "train": {"status": ENCODER_KIND},
        "versions": versions(),
    }
    failures = 0
    for p in todo:
        t1 = time.perf_counter()
        try:
            metrics = p.evaluate(features, cfg.seed)
        except SslbenchError as e:
            failures += 1
            _log(f"ERROR {name}/seed{cfg.seed}: protocol {p.name!r}: {e} (the other protocols go on)")
            continue
        dt = time.perf_counter() - t1
        doc = {
            **common,
            "protocol": protocol_info(p),
            "metrics": metrics,
            "encoder_hash": enc_hash,
            "timings": {"train_s": 0.0, "features_s": features_s, "features_cache_hit": False, "protocol_s": dt},
        }
        path = result_path(out, name, cfg.seed, p.name)
        write_result(path, doc, p.artifacts())
        main = metrics.get(p.main_metric)
        shown = f"{main:.4f}" if isinstance(main, int | float) else str(main)
        _log(f"{name}/seed{cfg.seed}: {p.name}.{p.main_metric} = {shown} ({dt:.1f}s)")
    table, notes = leaderboard.build(find_results(out))
    print(leaderboard.write(table, notes, out))
    return failures
