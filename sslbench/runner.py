"""``sslbench run``: for each method x seed, pretrain -> features -> protocols -> result JSONs.

Every stage is resumable: a finished checkpoint is not retrained, cached
features are not recomputed, an existing result with the same protocol version,
parameters and encoder is not re-evaluated. One failing run (bad checkpoint,
divergence) is reported and the sweep goes on.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslbench import distributed as dist
from sslbench import leaderboard
from sslbench.augment import TwoViews
from sslbench.backbones import build_backbone
from sslbench.config import RunConfig
from sslbench.data import load_dataset
from sslbench.data.transfer import transfer_set
from sslbench.errors import SslbenchError
from sslbench.faults import maybe_fault
from sslbench.features import Extras, cached_features
from sslbench.io import OutputError, atomic_write_json, remove_stale_temp_files
from sslbench.lock import RunLock
from sslbench.manifest import Manifest
from sslbench.method import Method, loss_changes
from sslbench.protocol import Protocol, select_protocols
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
from sslbench.train import METRICS, TrainOutcome, pretrain
from sslbench.types import ImageData

#: Why a protocol is skipped, per lacking requirement.
_WHY = {"transfer": "it requires a transfer set (set `transfer` under [run], or --transfer)"}


def _log(msg: str) -> None:
    if dist.is_main():
        print(msg, file=sys.stderr, flush=True)


def run_record(method: Method, seed: int, cfg: RunConfig) -> dict[str, Any]:
    """The fully resolved configuration of one (method, seed) run."""
    train, heads, views = cfg.recipe(method)
    return {
        "method": method.name,
        "base": method.base,
        "encoder_kind": method.encoder,
        "preset": cfg.preset,
        "dataset": cfg.dataset,
        "backbone": cfg.backbone,
        "width": cfg.width,
        "seed": seed,
        "train": dataclasses.asdict(train) if method.encoder == "trained" else None,
        "heads": heads if method.encoder == "trained" else None,
        "loss": ({"type": type(method.loss).__name__, **dataclasses.asdict(method.loss)} if method.loss else None),
        "views": [dataclasses.asdict(v) for v in views] if method.encoder == "trained" else None,
    }


def _check_run_dir(rdir: Path, record: dict[str, Any]) -> None:
    path = rdir / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(record)):
            diff = sorted(k for k in record if json.dumps(old.get(k), sort_keys=True) != json.dumps(record[k], sort_keys=True))
            raise SslbenchError(
                f"{rdir} holds a run with a different config (differs in: {', '.join(diff)}); "
                "use another --out or delete that directory"
            )
    elif dist.is_main():
        atomic_write_json(path, record)


def _train_seconds(rdir: Path) -> float:
    path = rdir / METRICS
    if not path.exists():
        return 0.0
    return sum(json.loads(ln).get("epoch_s", 0.0) for ln in path.read_text().splitlines() if ln.strip())


def _encoder(
    method: Method, data: ImageData, cfg: RunConfig, rdir: Path, seed: int
) -> tuple[nn.Module | None, nn.Module | None, TrainOutcome | None]:
    """``(backbone, projector, outcome)``: pretrains when the method trains."""
    if method.encoder == "raw_pixels":
        return None, None, None
    torch.manual_seed(seed)
    backbone = build_backbone(cfg.backbone, data.channels, cfg.width)
    if method.encoder == "random_init":
        return backbone, None, None
    train_cfg, heads, view_cfgs = cfg.recipe(method)
    model = method.build(backbone, heads, method.loss)
    views = TwoViews(*view_cfgs, mean=data.mean, std=data.std)
    outcome = pretrain(model, data, views, train_cfg, rdir, seed, cfg.device, label=f"{method.name}/seed{seed}")
    return model.backbone, getattr(model, "projector", None), outcome


def run_one(
    method: Method,
    seed: int,
    cfg: RunConfig,
    data: ImageData,
    protocols: list[Protocol],
    out: Path,
    transfer: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> None:
    """Pretrain (if needed), extract features and evaluate every protocol for one run.

    Args:
        method: The method, variant or floor.
        seed: Seed of the run.
        cfg: The resolved run configuration.
        data: The pretraining dataset.
        protocols: Protocols to evaluate.
        out: Output directory.
        transfer: ``(images, labels)`` of the transfer set, matched to ``data``'s images.
    """
    rdir = run_dir(out, method.name, seed)
    record = run_record(method, seed, cfg)
    _check_run_dir(rdir, record)
    todo = [p for p in protocols if not result_is_current(result_path(out, method.name, seed, p.name), p, None)]
    if not todo:
        _log(f"{method.name}/seed{seed}: all results present, skipped")
        return
    encoder, projector, outcome = _encoder(method, data, cfg, rdir, seed)
    train_info = dataclasses.asdict(outcome) if outcome else {"status": "not_trained"}
    base = registry("methods").get(method.base) if method.base else None
    common = {
        "schema_version": SCHEMA_VERSION,
        "method": method.name,
        "base": method.base,
        "encoder_kind": method.encoder,
        "loss_changes": loss_changes(method.loss, base.loss if base else None),
        "seed": seed,
        "config": record,
        "run_config": cfg.to_dict(),
        "dataset": {
            "name": data.name,
            "fingerprint": data.fingerprint,
            "source": data.source,
            "n_train": int(data.train_images.shape[0]),
            "n_test": int(data.test_images.shape[0]),
        },
        "train": train_info,
        "versions": versions(),
    }
    if outcome is not None and outcome.status == "diverged":
        for p in protocols if dist.is_main() else []:
            doc = {**common, "protocol": protocol_info(p), "metrics": {}, "encoder_hash": None,
                   "timings": {"train_s": _train_seconds(rdir)}}
            atomic_write_json(result_path(out, method.name, seed, p.name), doc)
        return
    t0 = time.perf_counter()
    views = TwoViews(*cfg.recipe(method)[2], mean=data.mean, std=data.std)  # floors: default + preset views
    extras = Extras(projector=projector, views=views, transfer=transfer, transfer_name=cfg.transfer or "", seed=seed)
    features, enc_hash, hit = cached_features(
        encoder, data, out / "cache" / "features", cfg.device, f"{method.name}/seed{seed}", extras
    )
    features_s = time.perf_counter() - t0
    _log(f"{method.name}/seed{seed}: features {features.train_x.shape[1]}-d "
         f"({'cache hit' if hit else f'extracted in {features_s:.1f}s'})")
    maybe_fault("after_features")
    errors = []
    for p in protocols if dist.is_main() else []:  # protocols run and write on rank 0 only
        path = result_path(out, method.name, seed, p.name)
        if result_is_current(path, p, enc_hash):
            continue
        t0 = time.perf_counter()
        try:
            metrics = p.evaluate(features, seed)
        except SslbenchError as e:  # one protocol's failure does not cost the others
            errors.append(f"{p.name}: {e}")
            continue
        dt = time.perf_counter() - t0
        maybe_fault(f"before_result:{p.name}")
        doc = {
            **common,
            "protocol": protocol_info(p),
            "metrics": metrics,
            "encoder_hash": enc_hash,
            "timings": {"train_s": _train_seconds(rdir), "features_s": features_s, "features_cache_hit": hit, "protocol_s": dt},
        }
        write_result(path, doc, p.artifacts())
        main = metrics.get(p.main_metric)
        shown = f"{main:.4f}" if isinstance(main, float) else main
        _log(f"{method.name}/seed{seed}: {p.name}.{p.main_metric} = {shown} ({dt:.1f}s)")
        maybe_fault(f"after_protocol:{p.name}")
    if errors:
        raise SslbenchError("; ".join(errors))


def run(cfg: RunConfig) -> int:
    """Run the whole sweep, write and print the leaderboard.

    Rank 0 holds ``<out>/.sslbench.lock`` throughout (:mod:`sslbench.lock`), clears
    the temp files of writes a kill cut short and appends this invocation to
    ``<out>/manifest.json`` (:mod:`sslbench.manifest`).

    Returns:
        The number of (method, seed) runs that failed with a reported error.

    Raises:
        SslbenchError: for bad input, or when another run holds the output directory.
        OutputError: when the output cannot be written (full disk, unwritable ``--out``).
    """
    cfg = cfg.resolved()
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise SslbenchError("--device cuda was asked for, but torch sees no CUDA device")
    if dist.init_from_env(cfg.device) and cfg.device == "cuda":
        cfg = dataclasses.replace(cfg, device=f"cuda:{dist.local_rank()}")
    out = Path(cfg.out)
    if not dist.is_main():  # rank 0 alone locks the output directory and keeps the manifest
        out.mkdir(parents=True, exist_ok=True)
        return _sweep(cfg, out, None)
    with RunLock(out) as lock, Manifest(out, cfg) as manifest:  # a second run on `out` refuses
        if lock.taken_over:
            _log(f"sslbench: {lock.taken_over}")
        stray = remove_stale_temp_files(out)
        if stray:
            _log(f"sslbench: removed {len(stray)} temp file(s) of writes cut short: "
                 f"{', '.join(p.name for p in stray[:3])}")
        manifest.failures = _sweep(cfg, out, manifest)
    return manifest.failures


def _sweep(cfg: RunConfig, out: Path, manifest: Manifest | None) -> int:
    """Load the data, run every (method, seed), write and print the leaderboard.

    Returns:
        The number of (method, seed) runs that failed with a reported error.
    """
    data = load_dataset(cfg.dataset, cfg.data_root)
    _log(f"dataset {data.name}: {data.train_images.shape[0]} train / {data.test_images.shape[0]} test, "
         f"fingerprint {data.fingerprint[:12]}")
    transfer = None
    if cfg.transfer:
        transfer = transfer_set(load_dataset(cfg.transfer, cfg.data_root), data)
        _log(f"transfer set {cfg.transfer}: {len(transfer[1])} images resized to {data.image_size}px")
    available = {"labels", "encoder"} | ({"transfer"} if transfer is not None else set())
    protocols, skipped = select_protocols(cfg.protocols, available, cfg.protocol_params, _WHY)
    for msg in skipped:
        _log(msg)
    if manifest is not None:
        manifest.record_data(data, protocols)
    failures = 0
    # Seed-major: an interrupted sweep has every method on the first seeds, not all seeds of a few.
    jobs = [(name, seed) for seed in cfg.seeds for name in cfg.methods + cfg.references]
    t_start = time.perf_counter()
    for i, (name, seed) in enumerate(jobs, 1):
        method = registry("methods").get(name)
        t0 = time.perf_counter()
        dist.barrier()  # every rank sees the files rank 0 wrote for the previous run
        try:
            run_one(method, seed, cfg, data, protocols, out, transfer)
        except OutputError:
            raise  # a full disk or an unwritable --out fails every later run too: stop here
        except SslbenchError as e:
            failures += 1
            _log(f"ERROR {name}/seed{seed}: {e} (the sweep goes on)")
        _log(f"[{i}/{len(jobs)}] {name}/seed{seed}: done in {time.perf_counter() - t0:.0f}s "
             f"(sweep {(time.perf_counter() - t_start) / 60:.1f} min)")
    dist.barrier()
    if dist.is_main():
        table, notes = leaderboard.build(find_results(out))
        for note in notes:  # mixed data fingerprints or protocol versions are never silent
            if note.startswith("WARNING"):
                _log(f"sslbench: {note}")
        print(leaderboard.write(table, notes, out))
    dist.destroy()
    return failures
