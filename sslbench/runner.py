"""``sslbench run``: for each method x seed, pretrain -> features -> protocols -> result records.

Every stage is resumable: a finished checkpoint is not retrained, cached
features are not recomputed, a current result (:func:`sslbench.store.is_current`)
is not re-evaluated. One failing run (bad checkpoint, divergence) is reported
and the sweep goes on.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sslbench import distributed as dist
from sslbench.augment import TwoViews
from sslbench.backbones import build_backbone
from sslbench.config import RunConfig
from sslbench.data import load_dataset
from sslbench.data.transfer import transfer_set
from sslbench.errors import SslbenchError
from sslbench.faults import maybe_fault
from sslbench.features import Extras, cached_features
from sslbench.io import OutputError, remove_stale_temp_files
from sslbench.layout import RunLayout, RunPaths
from sslbench.lock import RunLock
from sslbench.manifest import Manifest
from sslbench.method import Method, TrainConfig, ViewConfig, variant_changes
from sslbench.protocol import Protocol, check_features, select_protocols
from sslbench.records import DatasetInfo, RunHeader, Timings, TrainOutcome
from sslbench.registry import registry
from sslbench.scoring import ScoringJob, log, score, write_empty
from sslbench.store import claim_run_dir, versions
from sslbench.train import pretrain
from sslbench.training_log import train_seconds
from sslbench.types import ImageData

#: Why a protocol is skipped, per lacking requirement.
_WHY = {"transfer": "it requires a transfer set (set `transfer` under [run], or --transfer)"}


@dataclass(frozen=True)
class RunSpec:
    """One ``(method, seed)`` run of a sweep with its recipe resolved once.

    Attributes:
        method: The method, variant or floor.
        seed: The seed.
        train: Its training config in this run.
        heads: Its head sizes.
        views: Its two view recipes (floors: the default views with the preset's changes,
            for the collapse suite's positive pairs).
    """

    method: Method
    seed: int
    train: TrainConfig
    heads: dict[str, int]
    views: tuple[ViewConfig, ViewConfig]

    @classmethod
    def of(cls, method: Method, seed: int, cfg: RunConfig) -> RunSpec:
        """Resolve ``method``'s recipe in ``cfg``."""
        train, heads, views = cfg.recipe(method)
        return cls(method, seed, train, heads, views)

    def identity(self, cfg: RunConfig) -> dict[str, Any]:
        """The run's identity (``config.json``): everything that changes its encoder."""
        m, trained = self.method, self.method.encoder == "trained"
        return {
            "method": m.name, "base": m.base, "encoder_kind": m.encoder, "preset": cfg.preset,
            "dataset": cfg.dataset, "backbone": cfg.backbone, "width": cfg.width, "seed": self.seed,
            "train": dataclasses.asdict(self.train) if trained else None,
            "heads": self.heads if trained else None,
            "loss": {"type": type(m.loss).__name__, **dataclasses.asdict(m.loss)} if m.loss else None,
            **({"target": {"type": type(m.target).__name__, **dataclasses.asdict(m.target)}} if m.target else {}),
            "views": [dataclasses.asdict(v) for v in self.views] if trained else None,
        }


def _encoder(spec: RunSpec, data: ImageData, cfg: RunConfig,
             paths: RunPaths, identity: dict[str, Any]) -> tuple[nn.Module | None, nn.Module | None, TrainOutcome]:
    """``(backbone, projector, outcome)``: pretrains when the method trains."""
    method = spec.method
    if method.encoder == "raw_pixels":
        return None, None, TrainOutcome("not_trained")
    torch.manual_seed(spec.seed)
    backbone = build_backbone(cfg.backbone, data.channels, cfg.width)
    if method.encoder == "random_init":
        return backbone, None, TrainOutcome("not_trained")
    model = method.build_model(backbone, spec.heads, per_view=spec.train.per_view_forward)
    views = TwoViews(*spec.views, mean=data.mean, std=data.std)
    outcome = pretrain(model, data, views, spec.train, paths, spec.seed, cfg.device, identity)
    return model.backbone, getattr(model, "projector", None), outcome


def _header(spec: RunSpec, cfg: RunConfig, data: ImageData, identity: dict[str, Any],
            outcome: TrainOutcome) -> RunHeader:
    m = spec.method
    base = registry("methods").get(m.base) if m.base else None
    return RunHeader(
        method=m.name, base=m.base, encoder_kind=m.encoder, loss_changes=variant_changes(m, base), seed=spec.seed,
        config=identity, run_config=cfg.to_dict(), dataset=DatasetInfo(
            data.name, data.fingerprint, data.source, int(data.train_images.shape[0]), int(data.test_images.shape[0])),
        train=outcome, versions=versions(),
    )


def run_one(method: Method, seed: int, cfg: RunConfig, data: ImageData, protocols: list[Protocol],
            layout: RunLayout, transfer: tuple[torch.Tensor, torch.Tensor] | None = None) -> int:
    """Pretrain (if needed), extract features and evaluate every protocol for one run.

    Args:
        method: The method, variant or floor.
        seed: Seed of the run.
        cfg: The resolved run configuration.
        data: The pretraining dataset.
        protocols: Protocols to evaluate.
        layout: The output directory.
        transfer: ``(images, labels)`` of the transfer set, matched to ``data``'s images.

    Returns:
        The number of protocols that failed with an input error.
    """
    spec, paths = RunSpec.of(method, seed, cfg), layout.run(method.name, seed)
    identity = spec.identity(cfg)
    if dist.is_main():
        claim_run_dir(paths, identity)
    job = ScoringJob(paths, identity, split=cfg.split)
    if not job.pending(protocols):
        log(f"{paths.label}: all results present, skipped")
        return 0
    encoder, projector, outcome = _encoder(spec, data, cfg, paths, identity)
    header = _header(spec, cfg, data, identity, outcome)
    timings = Timings(train_s=train_seconds(paths.metrics_log))
    if outcome.status == "diverged":
        if dist.is_main():
            write_empty(job, header, protocols, timings)
        return 0
    t0 = time.perf_counter()
    extras = Extras(projector=projector, views=TwoViews(*spec.views, mean=data.mean, std=data.std),
                    transfer=transfer, transfer_name=cfg.transfer or "", seed=seed)
    features, enc_hash, hit = cached_features(encoder, data, layout.cache, cfg.device, paths.label, extras)
    check_features(features)
    timings = dataclasses.replace(timings, features_s=time.perf_counter() - t0, features_cache_hit=hit)
    log(f"{paths.label}: features {features.train.x.shape[1]}-d "
        f"({'cache hit' if hit else f'extracted in {timings.features_s:.1f}s'})")
    maybe_fault("after_features")
    if not dist.is_main():  # protocols run and write on rank 0 only
        return 0
    return score(job, header, protocols, features, enc_hash, timings)


def run(cfg: RunConfig) -> int:
    """Run the whole sweep (the command line then writes and prints the leaderboard).

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
    layout = RunLayout(cfg.out)
    if not dist.is_main():  # rank 0 alone locks the output directory and keeps the manifest
        layout.out.mkdir(parents=True, exist_ok=True)
        return _sweep(cfg, layout, None)
    with RunLock(layout.out) as lock, Manifest(layout.out, cfg) as manifest:  # a second run on `out` refuses
        if lock.taken_over:
            log(f"sslbench: {lock.taken_over}")
        stray = remove_stale_temp_files(layout.out)
        if stray:
            log(f"sslbench: removed {len(stray)} temp file(s) of writes cut short: "
                f"{', '.join(p.name for p in stray[:3])}")
        manifest.failures = _sweep(cfg, layout, manifest)
    return manifest.failures


def _load_data(cfg: RunConfig) -> tuple[ImageData, tuple[torch.Tensor, torch.Tensor] | None]:
    data = load_dataset(cfg.dataset, cfg.data_root)
    log(f"dataset {data.name}: {data.train_images.shape[0]} train / {data.test_images.shape[0]} test, "
        f"fingerprint {data.fingerprint[:12]}")
    transfer = None
    if cfg.transfer:
        transfer = transfer_set(load_dataset(cfg.transfer, cfg.data_root), data)
        log(f"transfer set {cfg.transfer}: {len(transfer[1])} images resized to {data.image_size}px")
    return data, transfer


def _sweep(cfg: RunConfig, layout: RunLayout, manifest: Manifest | None) -> int:
    """Load the data and run every (method, seed).

    Returns:
        The number of (method, seed) runs that failed with a reported error.
    """
    data, transfer = _load_data(cfg)
    available = {"labels", "encoder"} | ({"transfer"} if transfer is not None else set())
    protocols, skipped = select_protocols(cfg.protocols, available, cfg.protocol_params, _WHY)
    for msg in skipped:
        log(msg)
    if manifest is not None:
        manifest.record_data(data, protocols)
    # Seed-major: an interrupted sweep has every method on the first seeds, not all seeds of a few.
    jobs = [(name, seed) for seed in cfg.seeds for name in cfg.methods + cfg.floors]
    failures, t_start = 0, time.perf_counter()
    for i, (name, seed) in enumerate(jobs, 1):
        t0 = time.perf_counter()
        dist.barrier()  # every rank sees the files rank 0 wrote for the previous run
        try:
            failed = run_one(registry("methods").get(name), seed, cfg, data, protocols, layout, transfer)
        except OutputError:
            raise  # a full disk or an unwritable --out fails every later run too: stop here
        except SslbenchError as e:
            failed = 1
            log(f"ERROR {name}/seed{seed}: {e} (the sweep goes on)")
        failures += bool(failed)
        log(f"[{i}/{len(jobs)}] {name}/seed{seed}: done in {time.perf_counter() - t0:.0f}s "
            f"(sweep {(time.perf_counter() - t_start) / 60:.1f} min)")
    dist.barrier()
    dist.destroy()
    return failures
