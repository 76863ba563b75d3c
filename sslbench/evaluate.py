"""``sslbench eval``: evaluate any encoder, or precomputed features, with the registered protocols.

Two inputs, one output:

- ``--encoder PATH`` with ``--dataset NAME``: a TorchScript file (detected by
  its ``constants.pkl`` entry, loaded with ``torch.jit.load`` on the CPU), or a
  state dict of a registered backbone named by ``--arch`` (and ``--width``),
  loaded with ``weights_only=True`` so a pickle that carries code is refused.
  sslbench's own ``checkpoint.pt`` works too (its ``model["backbone.*"]``
  entries). Features are extracted from the dataset's train and test splits.
- ``--features FILE.npz``: arrays ``train_x (N, D)``, ``train_y (N,)``,
  ``test_x (M, D)``, ``test_y (M,)``, optionally ``transfer_x``/``transfer_y``
  (a transfer split) and ``train_z``/``test_z`` (projector outputs), loaded
  with ``allow_pickle=False``.

Each protocol whose requirements the inputs meet writes the same result JSON
as ``sslbench run`` into ``<out>/<name>/seed<seed>/results/<protocol>.json``
(``encoder_kind`` ``"external"``), so the leaderboard compares external
encoders with trained methods and references in the same ``--out``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import re
import sys
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sslbench import leaderboard, protocol
from sslbench.backbones import build_backbone
from sslbench.data import fingerprint, load_dataset
from sslbench.errors import SslbenchError
from sslbench.features import encoder_hash, extract
from sslbench.io import atomic_write_json, load_checkpoint
from sslbench.lock import RunLock
from sslbench.protocol import Protocol, check_features
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
from sslbench.types import FeatureSet, ImageData

ENCODER_KIND = "external"
REQUIRED_ARRAYS = ("train_x", "train_y", "test_x", "test_y")
OPTIONAL_ARRAYS = ("transfer_x", "transfer_y", "train_z", "test_z")
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


def _few(keys: list[str], n: int = 3) -> str:
    more = f", ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def file_sha256(path: Path) -> str:
    """sha256 hex of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- features file


def _feature_array(name: str, a: np.ndarray, path: Path) -> np.ndarray:
    if a.dtype.kind not in "fiu":
        raise SslbenchError(f"{name} in {path} must be a numeric array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise SslbenchError(f"{name} in {path} must be 2-D (N, D), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise SslbenchError(f"{name} in {path} is empty (shape {a.shape})")
    with np.errstate(over="ignore", invalid="ignore"):
        x = np.ascontiguousarray(a, dtype=np.float32)
    if a.dtype.kind == "f" and a.dtype.itemsize > 4 and np.isinf(x).sum() > np.isinf(a).sum():
        raise SslbenchError(f"{name} in {path} has values beyond the float32 range (|x| > 3.4e38); "
                            "rescale the features")
    return x


def _label_array(name: str, y: np.ndarray, rows: int, x_name: str, path: Path) -> np.ndarray:
    if y.ndim != 1:
        raise SslbenchError(f"{name} in {path} must be 1-D (N,) class labels, got shape {y.shape}")
    if len(y) != rows:
        raise SslbenchError(f"{name} in {path} has {len(y)} labels but {x_name} has {rows} rows")
    whole = y.dtype.kind == "f" and bool(np.isfinite(y).all()) and bool((y == np.round(y)).all())
    if y.dtype.kind not in "iu" and not whole:
        raise SslbenchError(f"{name} in {path} must hold integer class labels, got dtype {y.dtype}"
                            + (" with non-integer values" if y.dtype.kind == "f" else ""))
    if y.size and float(y.max()) >= 2**31:
        raise SslbenchError(f"{name} in {path} has labels up to {y.max()}; class labels must be 0..C-1")
    if y.size and float(y.min()) < 0:  # before the cast: a huge negative float would overflow it
        raise SslbenchError(f"{name} in {path} has negative labels (min {y.min()}); use 0..C-1")
    return y.astype(np.int64)


def load_features(path: str | Path) -> tuple[FeatureSet, str]:
    """Read and check a features ``.npz`` (``allow_pickle=False``).

    Args:
        path: File with ``train_x (N, D)``, ``train_y (N,)``, ``test_x (M, D)``,
            ``test_y (M,)`` and optionally ``transfer_x (T, D)``/``transfer_y (T,)``
            and projector outputs ``train_z (N, Dz)``/``test_z (M, Dz)``.

    Returns:
        ``(features, fingerprint)``: float32 features and int64 labels (the
        optional arrays in ``extra``), and the sha256 of the checked arrays.

    Raises:
        SslbenchError: naming the file and the array, for a missing or unreadable
            file, a pickle or object array, a missing or unknown array, a wrong
            shape or dtype, labels that do not match, NaN/Inf.
    """
    path = Path(path)
    if not path.is_file():
        raise SslbenchError(f"features file {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(6)
    if not (head.startswith(b"PK") or head.startswith(b"\x93NUMPY")):  # np.load would take it for a pickle
        if head[:1] == b"\x80":
            raise SslbenchError(f"refusing to load {path}: it is a pickle, not an .npz of plain arrays "
                                "(save features with numpy.savez)")
        raise SslbenchError(f"cannot read features file {path}: it is not an .npz archive (numpy.savez)")
    try:
        z = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise SslbenchError(f"cannot read features file {path}: {str(e).splitlines()[0]}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise SslbenchError(f"cannot read features file {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise SslbenchError(f"{path} holds a single array; sslbench needs an .npz (numpy.savez) with "
                            f"{', '.join(REQUIRED_ARRAYS)}")
    with z:
        names = list(z.files)
        missing = [n for n in REQUIRED_ARRAYS if n not in names]
        if missing:
            raise SslbenchError(f"{path} lacks array(s) {', '.join(missing)} (has: {', '.join(names) or 'none'})")
        unknown = [n for n in names if n not in REQUIRED_ARRAYS + OPTIONAL_ARRAYS]
        if unknown:
            raise SslbenchError(f"{path} has unknown array(s) {', '.join(unknown)}; expected "
                                f"{', '.join(REQUIRED_ARRAYS)} and optionally {', '.join(OPTIONAL_ARRAYS)}")
        raw: dict[str, np.ndarray] = {}
        for n in names:
            try:
                raw[n] = z[n]
            except ValueError as e:
                why = ("it is an object array (pickled Python objects); save numeric arrays"
                       if "pickle" in str(e) or "Object arrays" in str(e) else str(e).splitlines()[0])
                raise SslbenchError(f"refusing to load array {n} from {path}: {why}") from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                raise SslbenchError(f"cannot read array {n} from {path}: {str(e).splitlines()[0]}") from None
    if ("transfer_x" in raw) != ("transfer_y" in raw):
        raise SslbenchError(f"{path} has only one of transfer_x/transfer_y; give both or neither")
    if ("train_z" in raw) != ("test_z" in raw):
        raise SslbenchError(f"{path} has only one of train_z/test_z; give both or neither")
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test", "transfer"):
        if f"{split}_x" in raw:
            x = arrays[f"{split}_x"] = _feature_array(f"{split}_x", raw[f"{split}_x"], path)
            arrays[f"{split}_y"] = _label_array(f"{split}_y", raw[f"{split}_y"], len(x), f"{split}_x", path)
    for n in ("train_z", "test_z"):
        if n in raw:
            arrays[n] = _feature_array(n, raw[n], path)
    fs = FeatureSet(
        train_x=arrays["train_x"], train_y=arrays["train_y"], test_x=arrays["test_x"], test_y=arrays["test_y"],
        run=path.name, extra={n: arrays[n] for n in OPTIONAL_ARRAYS if n in arrays},
    )
    check_features(fs)
    if "transfer_x" in arrays and arrays["transfer_x"].shape[1] != fs.train_x.shape[1]:
        raise SslbenchError(f"transfer_x in {path} has {arrays['transfer_x'].shape[1]} dims but train_x has "
                            f"{fs.train_x.shape[1]}")
    fp = fingerprint(*(arrays[n] for n in REQUIRED_ARRAYS + OPTIONAL_ARRAYS if n in arrays))
    return fs, fp


# ----------------------------------------------------------------------------- encoder file


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``constants.pkl`` entry)."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _default_width(arch: str) -> int:
    default = inspect.signature(registry("backbones").get(arch)).parameters.get("width")
    if default is None or default.default is inspect.Parameter.empty:
        raise SslbenchError(f"backbone {arch!r} has no default width; pass --width")
    return int(default.default)


def _state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The backbone weights inside a loaded checkpoint (see :func:`load_encoder`)."""
    if not isinstance(obj, dict):
        raise SslbenchError(f"{path} holds a {type(obj).__name__}, not a state dict (a dict of tensors)")
    if isinstance(obj.get("model"), dict):  # sslbench's checkpoint.pt (and others' {"model": ...})
        sd = obj["model"]
        if any(k.startswith("backbone.") for k in sd):
            sd = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    elif isinstance(obj.get("state_dict"), dict):
        sd = obj["state_dict"]
    else:
        sd = obj
    if sd and all(k.startswith("module.") for k in sd):  # saved from DistributedDataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    bad = [str(k) for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if not sd or bad:
        why = f"entries {_few(bad)} are not tensors" if bad else "it is empty"
        raise SslbenchError(f"{path} is not a state dict of tensors ({why})")
    return sd


def load_encoder(
    path: str | Path, arch: str | None, width: int | None, in_channels: int
) -> tuple[nn.Module, dict[str, Any]]:
    """Load an external encoder: TorchScript, or a state dict of a registered backbone.

    A state dict may be the backbone's own ``state_dict()``, a dict with a
    ``"model"`` entry (sslbench's ``checkpoint.pt``: its ``backbone.*`` keys are
    used) or a ``"state_dict"`` entry; a ``module.`` prefix is stripped.

    Args:
        path: The file.
        arch: Registered backbone name (needed for a state dict).
        width: Backbone width (default: the backbone's default).
        in_channels: Image channels of the dataset.

    Returns:
        ``(encoder, info)``: the module in eval mode on the CPU and what was
        loaded (``format``, ``arch``, ``width``).

    Raises:
        SslbenchError: for a missing file, a pickle that carries code, a state
            dict whose keys or shapes do not fit ``arch``, a missing ``--arch``.
    """
    path = Path(path)
    if not path.is_file():
        raise SslbenchError(f"encoder file {path} does not exist")
    if is_torchscript(path):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in torch >= 2.9
                module = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, OSError, ValueError) as e:
            raise SslbenchError(f"TorchScript file {path} cannot be loaded: {str(e).splitlines()[0]}") from None
        return module.eval(), {"format": "torchscript", "arch": None, "width": None}
    state = _state_dict(load_checkpoint(path), path)  # weights_only=True: code is refused here
    if not arch:
        raise SslbenchError(f"{path} is a state dict, not TorchScript: name its architecture with --arch "
                            f"(one of {', '.join(registry('backbones').names())})")
    registry("backbones").get(arch)  # unknown arch -> did you mean
    width = _default_width(arch) if width is None else width
    try:
        model = build_backbone(arch, in_channels, width)
    except (ValueError, TypeError) as e:
        raise SslbenchError(f"cannot build backbone {arch!r} with width {width}: {e}") from None
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    if missing or unexpected:
        parts = ([f"missing keys {_few(missing)}"] if missing else []) + (
            [f"unexpected keys {_few(unexpected)}"] if unexpected else [])
        raise SslbenchError(f"{path} is not a state dict of backbone {arch!r}: {'; '.join(parts)} "
                            "(check --arch)")
    shapes = [k for k, v in want.items() if tuple(state[k].shape) != tuple(v.shape)]
    if shapes:
        k = shapes[0]
        raise SslbenchError(
            f"{path} does not fit backbone {arch!r} with width {width} and {in_channels} input channel(s): "
            f"{k} has shape {tuple(state[k].shape)} in the file but {tuple(want[k].shape)} in the model"
            + (f" (+{len(shapes) - 1} more)" if len(shapes) > 1 else "") + " (check --width and --dataset)"
        )
    model.load_state_dict(state)
    return model.eval(), {"format": "state_dict", "arch": arch, "width": width}


def encoder_features(
    encoder: nn.Module, data: ImageData, device: str, path: Path
) -> FeatureSet:
    """Train/test features of ``encoder`` on ``data``; a failing forward pass is an SslbenchError."""
    arrays = {}
    for split, images in (("train", data.train_images), ("test", data.test_images)):
        try:
            arrays[split] = extract(encoder, images, data.mean, data.std, device)
        except (RuntimeError, ValueError, TypeError) as e:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
            why = lines[-1] if lines[0].startswith("The following operation failed") else lines[0]  # TorchScript
            raise SslbenchError(f"encoder {path} failed on {data.name} images of shape "
                                f"(B, {', '.join(map(str, images.shape[1:]))}): {why}") from None
        if arrays[split].ndim != 2:
            raise SslbenchError(f"encoder {path} returned {split} features of shape {arrays[split].shape}; "
                                "sslbench needs (N, D)")
    fs = FeatureSet(arrays["train"], data.train_labels.numpy(), arrays["test"], data.test_labels.numpy(),
                    run=path.name)
    check_features(fs)
    return fs


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
