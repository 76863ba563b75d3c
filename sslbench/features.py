"""Feature extraction, cached on disk by encoder hash + data fingerprint + extraction recipe.

A second evaluation of an unchanged encoder on unchanged data runs no forward
pass: the features come from ``<cache>/<key>/<name>.npy``, float32 arrays that
are memory-mapped (read lazily) rather than loaded whole. A cache entry is
written as a temporary directory and renamed into place, so it is either
complete or absent.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sslbench import distributed as dist
from sslbench.augment import TwoViews, normalize
from sslbench.faults import maybe_fault
from sslbench.io import TMP_SUFFIX, output_error
from sslbench.types import FeatureSet, ImageData, MultiViews, PositivePairs, Split

#: Positive pairs extracted for the alignment reading of the collapse suite.
DEFAULT_PAIRS = 2048
#: Images and views per image extracted for the LiDAR reading of the collapse suite.
DEFAULT_VIEW_IMAGES = 256
DEFAULT_VIEWS_PER_IMAGE = 8
#: Marker file written last into a cache entry, with the digest of every array.
COMPLETE = "complete.json"
#: Version of that marker (1 listed names only; entries of version 1 are recomputed once).
CACHE_VERSION = 2


def encoder_hash(encoder: nn.Module | None) -> str:
    """sha256 of an encoder's state dict (names, dtypes, shapes, values); ``raw_pixels`` for ``None``."""
    if encoder is None:
        return "raw_pixels"
    h = hashlib.sha256()
    for name, t in sorted(encoder.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


@torch.inference_mode()
def _forward(encoder: nn.Module | None, batches: Iterator[torch.Tensor], device: str) -> torch.Tensor:
    """Concatenated ``encoder`` outputs over normalised input batches (flattened inputs for ``None``)."""
    out = []
    for x in batches:
        x = x.to(device)
        if encoder is None:
            out.append(x.flatten(1).cpu())
            continue
        if device == "cpu" and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(encoder(x).float().cpu())
    return torch.cat(out)


def extract(
    encoder: nn.Module | None,
    images: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: str = "cpu",
    batch_size: int = 1024,
) -> np.ndarray:
    """Run a frozen encoder over uint8 images.

    Args:
        encoder: ``(B, C, H, W) -> (B, D)``, put in eval mode here; ``None`` for raw pixels.
        images: ``(N, C, H, W)`` uint8.
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation std.
        device: Where to run.
        batch_size: Images per forward pass.

    Returns:
        ``(N, D)`` float32 features (``D = C*H*W`` for raw pixels). Under torchrun each
        rank extracts one contiguous shard and every rank gets all rows, in order.
    """
    if encoder is not None:
        encoder.eval().to(device)
    n, world, rank = images.shape[0], dist.world_size(), dist.rank()
    shard = images[rank * n // world : (rank + 1) * n // world]
    batches = (normalize(shard[i : i + batch_size], mean, std) for i in range(0, shard.shape[0], batch_size))
    local = _forward(encoder, batches, device)
    if world > 1:
        local = dist.all_gather_no_grad(local.to(device) if device != "cpu" else local).cpu()
    return local.numpy().astype(np.float32, copy=False)


def project(projector: nn.Module, features: np.ndarray, device: str = "cpu", batch_size: int = 4096) -> np.ndarray:
    """Projector outputs (eval mode) of already extracted backbone features.

    Args:
        projector: ``(B, D) -> (B, P)``.
        features: ``(N, D)`` backbone features.
        device: Where to run.
        batch_size: Rows per forward pass.

    Returns:
        ``(N, P)`` float32.
    """
    projector.eval().to(device)
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    batches = (x[i : i + batch_size] for i in range(0, len(x), batch_size))
    return _forward(projector, batches, device).numpy()


def positive_pair_views(
    images: torch.Tensor, views: TwoViews, n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Two augmented views of a seeded subsample of ``images``: the positive pairs of alignment.

    Args:
        images: ``(N, C, H, W)`` uint8.
        views: The method's view recipe (normalises too).
        n: Pairs wanted (at most ``N``).
        seed: Seed of the subsample and of the augmentations.

    Returns:
        ``(view_a, view_b, rows)``: two ``(n, C, H, W)`` float tensors and the ``(n,)`` rows used.
    """
    rows = np.sort(np.random.default_rng(seed).choice(len(images), min(n, len(images)), replace=False))
    gen = torch.Generator().manual_seed(seed)
    va, vb = views(images[torch.from_numpy(rows)], gen)
    return va, vb, rows


@dataclass(frozen=True)
class Extras:
    """What is extracted besides the backbone features of the train and test splits.

    Attributes:
        projector: The method's projector; its outputs become ``train_z``/``test_z``.
        views: The method's augmentations; with ``pairs > 0``, positive pairs of test
            images become ``pair_xa``/``pair_xb`` (and ``pair_za``/``pair_zb``).
        pairs: Number of positive pairs.
        view_images: With ``views``, this many test images get ``views_per_image``
            augmented views each: ``views_x`` ``(n, q, D)`` (and ``views_z``).
        views_per_image: Views per image (an even number: the two view recipes alternate).
        transfer: ``(images, labels)`` of a transfer set, already matched to the
            pretraining images' channels and size: ``transfer_x``/``transfer_y``.
        transfer_name: Name recorded for the transfer set (part of the cache key).
        seed: Seed of the pair subsample and augmentations.
    """

    projector: nn.Module | None = None
    views: TwoViews | None = None
    pairs: int = DEFAULT_PAIRS
    view_images: int = DEFAULT_VIEW_IMAGES
    views_per_image: int = DEFAULT_VIEWS_PER_IMAGE
    transfer: tuple[torch.Tensor, torch.Tensor] | None = None
    transfer_name: str = ""
    seed: int = 0

    def recipe(self) -> str:
        """A string that changes whenever the extracted arrays would."""
        views = [asdict(v) for v in self.views.views] if self.views is not None else None
        transfer = None
        if self.transfer is not None:
            imgs, labels = self.transfer
            digest = hashlib.sha256(imgs.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()[:16]
            transfer = f"{self.transfer_name}:{digest}"
        multi = [self.view_images, self.views_per_image] if views else None
        return json.dumps({"v": 3, "views": views, "pairs": self.pairs if views else 0, "multiview": multi,
                           "seed": self.seed, "transfer": transfer}, sort_keys=True)


def multiple_views(images: torch.Tensor, views: TwoViews, n: int, q: int, seed: int) -> torch.Tensor:
    """``q`` augmented views of each of a seeded subsample of ``n`` images (the two recipes alternate).

    Args:
        images: ``(N, C, H, W)`` uint8.
        views: The method's view recipe (normalises too).
        n: Images wanted (at most ``N``).
        q: Views per image, even.
        seed: Seed of the subsample and of the augmentations (offset from the pairs').

    Returns:
        ``(n, q, C, H, W)`` float views.
    """
    rows = np.sort(np.random.default_rng(seed + 1).choice(len(images), min(n, len(images)), replace=False))
    gen = torch.Generator().manual_seed(seed + 1)
    batch = images[torch.from_numpy(rows)]
    out = [v for _ in range(q // 2) for v in views(batch, gen)]
    return torch.stack(out, dim=1)


def _extract_all(encoder: nn.Module | None, data: ImageData, extras: Extras, device: str) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for split, images in (("train", data.train_images), ("test", data.test_images)):
        arrays[f"{split}_x"] = extract(encoder, images, data.mean, data.std, device)
        if split == "train":
            maybe_fault("during_features")
    if extras.transfer is not None:
        imgs, labels = extras.transfer
        arrays["transfer_x"] = extract(encoder, imgs, data.mean, data.std, device)
        arrays["transfer_y"] = labels.numpy().astype(np.int64)
    if extras.views is not None and extras.pairs > 0:
        va, vb, _ = positive_pair_views(data.test_images, extras.views, extras.pairs, extras.seed)
        arrays["pair_xa"] = _forward(encoder, iter(va.split(1024)), device).numpy()  # extract() set eval mode
        arrays["pair_xb"] = _forward(encoder, iter(vb.split(1024)), device).numpy()
    if extras.views is not None and extras.view_images > 0 and extras.views_per_image >= 2:
        mv = multiple_views(data.test_images, extras.views, extras.view_images, extras.views_per_image, extras.seed)
        n, q = mv.shape[:2]
        flat = _forward(encoder, iter(mv.flatten(0, 1).split(1024)), device).numpy()
        arrays["views_x"] = flat.reshape(n, q, -1)
    if extras.projector is not None:  # train_x -> train_z, pair_xa -> pair_za, ...; the transfer set has none
        for name in [k for k in arrays if "_x" in k and k != "transfer_x"]:
            x = arrays[name]
            z = project(extras.projector, x.reshape(-1, x.shape[-1]), device)
            arrays[name.replace("_x", "_z")] = z.reshape(*x.shape[:-1], z.shape[-1])
    return arrays


def _digest(arr: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes (what a cache entry is checked against)."""
    a = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{a.dtype.str}|{a.shape}".encode())
    h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


def _write_entry(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a cache entry as ``<path>/<name>.npy`` via a temporary sibling directory and a rename.

    ``complete.json`` is written last and holds each array's :func:`_digest`, which
    :func:`_read_entry` checks.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent))  # see remove_stale_temp_files
    try:
        for name, arr in arrays.items():
            with open(tmp / f"{name}.npy", "wb") as f:
                np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
        with open(tmp / COMPLETE, "w") as f:
            json.dump({"version": CACHE_VERSION, "arrays": {n: _digest(a) for n, a in sorted(arrays.items())}}, f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():  # a damaged entry: replace it
            shutil.rmtree(path)
        os.rename(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _names(extras: Extras) -> set[str]:
    """The arrays :func:`_extract_all` makes for ``extras`` (what a cache entry of them must list)."""
    names = {"train_x", "test_x"} | ({"transfer_x", "transfer_y"} if extras.transfer is not None else set())
    if extras.views is not None and extras.pairs > 0:
        names |= {"pair_xa", "pair_xb"}
    if extras.views is not None and extras.view_images > 0 and extras.views_per_image >= 2:
        names.add("views_x")
    if extras.projector is not None:
        names |= {n.replace("_x", "_z") for n in names if "_x" in n and n != "transfer_x"}
    return names


def _read_entry(path: Path, label: str, names: set[str] | None = None) -> dict[str, np.ndarray] | None:
    """The arrays of a complete, intact cache entry, memory-mapped; ``None`` if absent or damaged.

    A damaged entry (a manifest of the wrong shape or listing other arrays than ``names``,
    a missing, unreadable or changed array) is reported in one line and recomputed by the caller.
    """
    if not (path / COMPLETE).exists():
        return None
    try:
        manifest = json.loads((path / COMPLETE).read_bytes().decode("utf-8"))
        digests = manifest.get("arrays") if isinstance(manifest, dict) and manifest.get("version") == CACHE_VERSION else None
        if not isinstance(digests, dict) or not digests:
            raise ValueError("its manifest is not one of this version")
        if names is not None and set(digests) != names:
            raise ValueError(f"its manifest lists {', '.join(sorted(digests))[:60]}, not this run's arrays")
        arrays = {n: np.load(path / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in digests}
        changed = [n for n, a in arrays.items() if _digest(a) != digests[n]]
        if changed:
            raise ValueError(f"{', '.join(changed)} changed on disk")
    except (OSError, ValueError, TypeError, UnicodeDecodeError, RecursionError) as e:  # deep JSON: RecursionError
        _notice(f"{label}: cached features in {path} are damaged ({' '.join(str(e).split())[:120]}); recomputing")
        return None
    return arrays


def _notice(msg: str) -> None:
    if dist.is_main():
        print(msg, file=sys.stderr, flush=True)


def cached_features(
    encoder: nn.Module | None,
    data: ImageData,
    cache_dir: Path,
    device: str = "cpu",
    run: str = "",
    extras: Extras | None = None,
) -> tuple[FeatureSet, str, bool]:
    """Features of ``encoder`` on ``data``'s train and test splits (plus :class:`Extras`), cached.

    Args:
        encoder: Frozen backbone, or ``None`` for raw pixels.
        data: The dataset.
        cache_dir: Directory of cache entries.
        device: Where to extract on a cache miss.
        run: Run id for messages.
        extras: Projector outputs, positive pairs and a transfer set to extract too.

    Returns:
        ``(features, encoder_hash, hit)`` where ``hit`` says whether the cache served it;
        the hash covers the projector too when there is one.
    """
    extras = extras or Extras()
    enc = encoder_hash(encoder)
    if extras.projector is not None:
        enc = hashlib.sha256(f"{enc}|{encoder_hash(extras.projector)}".encode()).hexdigest()
    key = hashlib.sha256(f"{enc}|{data.fingerprint}|{extras.recipe()}".encode()).hexdigest()[:32]
    path = cache_dir / key
    arrays = _read_entry(path, run or key, _names(extras))
    hit = arrays is not None
    if arrays is None:
        arrays = _extract_all(encoder, data, extras, device)
        if dist.is_main():
            try:
                _write_entry(path, arrays)
            except OSError as e:
                raise output_error(path, _as_disk_full(e, path)) from e  # OutputError: stops the sweep
    return _from_entry(arrays, data.train_labels.numpy(), data.test_labels.numpy(), run), enc, hit


def _from_entry(arrays: dict[str, np.ndarray], train_y: np.ndarray, test_y: np.ndarray, run: str = "") -> FeatureSet:
    """The typed feature set of a cache entry's flat arrays (``train_x``, ``test_z``, ``pair_xa``, ...).

    Args:
        arrays: Flat arrays by their stored names.
        train_y: ``(N_train,)`` labels.
        test_y: ``(N_test,)`` labels.
        run: Run id for messages.
    """
    transfer = None
    if "transfer_x" in arrays:
        transfer = Split(arrays["transfer_x"], arrays["transfer_y"])
    pairs = None
    if "pair_xa" in arrays:
        pairs = PositivePairs(arrays["pair_xa"], arrays["pair_xb"], arrays.get("pair_za"), arrays.get("pair_zb"))
    views = MultiViews(arrays["views_x"], arrays.get("views_z")) if "views_x" in arrays else None
    return FeatureSet(
        train=Split(arrays["train_x"], train_y, arrays.get("train_z")),
        test=Split(arrays["test_x"], test_y, arrays.get("test_z")),
        transfer=transfer, pairs=pairs, views=views, run=run,
    )


def _as_disk_full(e: OSError, path: Path) -> OSError:
    """numpy reports a short write on a full disk as ``OSError("N requested and M written")`` with
    no errno; name it as the full disk it is."""
    if e.errno is None and "requested and" in str(e):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return e
