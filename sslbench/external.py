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
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslbench import protocol
from sslbench.data import load_dataset
from sslbench.encoders import encoder_features, file_sha256, load_encoder
from sslbench.errors import SslbenchError
from sslbench.feature_files import load_features
from sslbench.features import encoder_hash
from sslbench.layout import RunLayout
from sslbench.lock import RunLock
from sslbench.preprocess import InputSpec, parse_normalize
from sslbench.protocol import Protocol
from sslbench.records import DatasetInfo, RunHeader, Timings, TrainOutcome
from sslbench.registry import registry
from sslbench.scoring import ScoringJob, log, score
from sslbench.store import check_run_dir, claim_run_dir, versions
from sslbench.types import FeatureSet, ImageData

ENCODER_KIND = "external"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
#: Identity keys that may differ between evaluations of the same weights or arrays.
_VOLATILE = frozenset({"encoder_path", "features_path", "encoder_file_sha256"})
_WHY = {
    "transfer": "it requires a transfer split (transfer_x/transfer_y in a --features file)",
    "encoder": "it requires the encoder itself (use --encoder, not --features)",
    "labels": "it requires labels",
}


@dataclass
class EvalConfig:
    """What ``sslbench eval`` was asked to do (recorded in every result as ``run_config``).

    Attributes:
        encoder: TorchScript or checkpoint file; exclusive with ``features``.
        arch: Architecture of a checkpoint: a registered backbone, ``torchvision:NAME``
            or ``timm:NAME`` (:mod:`sslbench.encoders`, :mod:`sslbench.checkpoint_formats`).
        width: Width of a registered backbone (default: its own default).
        key_prefix: The key prefix of the backbone's weights in the checkpoint, for a
            layout sslbench does not recognise.
        image_size: Resize and centre-crop the images to this square side (224 for
            ImageNet models); default: the dataset's images as they are.
        resize: Shorter side before that centre crop (default ``image_size``).
        normalize: ``dataset`` (default), ``imagenet``, ``none`` or ``MEAN,STD`` numbers.
        dataset: Dataset to extract features from (with ``encoder``).
        data_root: Where to look for the dataset first.
        features: ``.npz`` file of precomputed features; exclusive with ``encoder``.
        protocols: Protocols to run (default: every registered one the inputs allow).
        protocol_set: A named protocol set (:mod:`sslbench.protocol_sets`) instead of
            ``protocols``: its protocols with its parameters.
        name: Row name in the leaderboard (default: the file stem).
        seed: Seed passed to the protocols.
        out: Output directory.
        device: Where to extract features (``cpu`` or ``cuda``).
        split: What the protocols score on: ``test``, or ``val`` (:mod:`sslbench.splits`).
    """

    encoder: str | None = None
    arch: str | None = None
    width: int | None = None
    key_prefix: str | None = None
    image_size: int | None = None
    resize: int | None = None
    normalize: str = "dataset"
    dataset: str | None = None
    data_root: str | None = None
    features: str | None = None
    protocols: list[str] | None = None
    protocol_set: str | None = None
    name: str | None = None
    seed: int = 0
    out: str = "runs"
    device: str = "cpu"
    split: str = "test"


@dataclass
class _Input:
    """What the inputs of one evaluation resolved to.

    Attributes:
        identity: The evaluation's identity (its ``config.json``).
        dataset: What the features are computed on.
        available: What the inputs provide to protocols (``labels``, ``transfer``, ``encoder``).
        features: The features of a features file (``None`` until extracted for an encoder).
        encoder: An external encoder, with the dataset to extract from.
        data: That dataset.
        encoder_hash: The encoder's identity (``None`` for a features file).
    """

    identity: dict[str, Any]
    dataset: DatasetInfo
    available: set[str]
    features: FeatureSet | None = None
    encoder: nn.Module | None = None
    data: ImageData | None = None
    encoder_hash: str | None = None
    inputs: InputSpec | None = None


def _check_args(cfg: EvalConfig) -> tuple[Path, str]:
    """The input file and the row name, after checking the flags that go together."""
    if (cfg.encoder is None) == (cfg.features is None):
        raise SslbenchError("give exactly one of --encoder or --features")
    if cfg.features is not None:
        extra = [f for f, v in (("--arch", cfg.arch), ("--width", cfg.width), ("--dataset", cfg.dataset),
                                ("--data-root", cfg.data_root), ("--key-prefix", cfg.key_prefix),
                                ("--image-size", cfg.image_size), ("--resize", cfg.resize)) if v is not None]
        extra += ["--normalize"] if cfg.normalize != "dataset" else []
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
    for n in cfg.protocols or []:
        registry("protocols").get(n)  # an unknown name fails before any loading ("did you mean")
    return src, name


def _features_input(cfg: EvalConfig, src: Path, name: str) -> _Input:
    loaded = load_features(src)
    features = loaded.features
    dataset = DatasetInfo(f"features:{src.name}", loaded.data_fingerprint, str(src), len(features.train.x),
                          len(features.test.x), len(features.transfer.x) if features.transfer is not None else None)
    # the identity holds the features' own hash: changed features under the same --name are refused
    identity = {"method": name, "encoder_kind": ENCODER_KIND, "input": "features", "features_path": str(src),
                "features_fingerprint": loaded.features_fingerprint, "seed": cfg.seed}
    available = {"labels"} | ({"transfer"} if features.transfer is not None else set())
    return _Input(identity, dataset, available, features=features)


def _encoder_input(cfg: EvalConfig, src: Path, name: str) -> _Input:
    data = load_dataset(cfg.dataset, cfg.data_root)  # type: ignore[arg-type]
    encoder, info = load_encoder(src, cfg.arch, cfg.width, data.channels, cfg.key_prefix)
    log(f"{name}: {info.report()}")
    spec = InputSpec(cfg.image_size, cfg.resize, parse_normalize(cfg.normalize), channels=info.in_channels)
    inputs = spec.resolve(data.channels, data.mean, data.std, data.name)
    file_hash = file_sha256(src)
    # TorchScript carries code as well as weights: its identity is the file
    enc_hash = file_hash if info.format == "torchscript" else encoder_hash(encoder)
    dataset = DatasetInfo(data.name, data.fingerprint, data.source, int(data.train_images.shape[0]),
                          int(data.test_images.shape[0]))
    identity = {"method": name, "encoder_kind": ENCODER_KIND, "input": "encoder", "encoder_path": str(src),
                "encoder_format": info.format, "encoder_hash": enc_hash, "encoder_file_sha256": file_hash,
                "arch": info.arch, "width": info.width, "dataset": data.name, "seed": cfg.seed,
                "encoder": info.to_record(), "inputs": inputs.to_record()}
    return _Input(identity, dataset, {"labels", "encoder"}, encoder=encoder, data=data, encoder_hash=enc_hash,
                  inputs=spec)


def select_protocols(names: list[str] | None, available: set[str],
                     params: dict[str, dict[str, Any]] | None = None) -> list[Protocol]:
    """The protocols to run: ``names`` (default: all registered) with ``params``, minus those
    whose requirements ``available`` does not meet (each skip logged with the reason)."""
    if names is not None and not names:
        raise SslbenchError("--protocols is empty; name at least one (see `sslbench ls protocols`)")
    chosen, skipped = protocol.select_protocols(registry("protocols").names() if names is None else names,
                                                available, params, why=_WHY)
    for msg in skipped:
        log(msg)
    if not chosen:
        raise SslbenchError("no protocol to run: every requested protocol needs inputs this evaluation lacks")
    return chosen


def evaluate(cfg: EvalConfig) -> int:
    """Evaluate an external encoder or a features file and write its results (the command line
    then writes and prints the leaderboard).

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
    src, name = _check_args(cfg)
    t0 = time.perf_counter()
    inp = _features_input(cfg, src, name) if cfg.features is not None else _encoder_input(cfg, src, name)
    if cfg.protocol_set is not None:
        pset = registry("protocol_sets").get(cfg.protocol_set)
        protocols = select_protocols(list(pset.protocols), inp.available, pset.params)
    else:
        protocols = select_protocols(cfg.protocols, inp.available)
    if lock.acquire().taken_over:
        log(f"sslbench: {lock.taken_over}")
    layout = RunLayout(cfg.out)
    paths = layout.run(name, cfg.seed)
    check_run_dir(paths, inp.identity, _VOLATILE)  # refuse before extracting; write once features exist
    job = ScoringJob(paths, inp.identity, _VOLATILE, cfg.split)
    todo = job.pending(protocols, inp.encoder_hash)
    for p in protocols:
        if p not in todo:
            log(f"{paths.label}: {p.name} result present, skipped")
    features = inp.features
    if todo and inp.encoder is not None:
        log(f"{name}: extracting features of {src.name} on {inp.data.name} ({cfg.device})")  # type: ignore[union-attr]
        features = encoder_features(inp.encoder, inp.data, cfg.device, src, inp.inputs)  # type: ignore[arg-type]
    if todo:
        claim_run_dir(paths, inp.identity, _VOLATILE)
    header = RunHeader(name, None, ENCODER_KIND, {}, cfg.seed, inp.identity, dataclasses.asdict(cfg), inp.dataset,
                       TrainOutcome(ENCODER_KIND), versions())
    return score(job, header, todo, features, inp.encoder_hash,  # type: ignore[arg-type]
                 Timings(features_s=time.perf_counter() - t0))
