"""Feature extraction, cached on disk by encoder hash + data fingerprint.

A second evaluation of an unchanged encoder on unchanged data runs no forward
pass: the features come from ``<cache>/<key>.npz``.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sslbench import distributed as dist
from sslbench.augment import normalize
from sslbench.io import atomic_write_bytes
from sslbench.types import FeatureSet, ImageData


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
        encoder: ``(B, C, H, W) -> (B, D)`` in eval mode; ``None`` for raw pixels.
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
    out = []
    for i in range(0, shard.shape[0], batch_size):
        x = normalize(shard[i : i + batch_size].to(device), mean, std)
        if encoder is None:
            out.append(x.flatten(1).cpu())
            continue
        if device == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(encoder(x).float().cpu())
    local = torch.cat(out)
    if world > 1:
        local = dist.all_gather_no_grad(local.to(device) if device != "cpu" else local).cpu()
    return local.numpy().astype(np.float32, copy=False)


def cached_features(
    encoder: nn.Module | None,
    data: ImageData,
    cache_dir: Path,
    device: str = "cpu",
    run: str = "",
    projector: nn.Module | None = None,
) -> tuple[FeatureSet, str, bool]:
    """Features of ``encoder`` on ``data``'s train and test splits, from cache when present.

    Args:
        encoder: Frozen backbone, or ``None`` for raw pixels.
        data: The dataset.
        cache_dir: Directory of ``.npz`` feature files.
        device: Where to extract on a cache miss.
        run: Run id for messages.
        projector: The method's projector; when given, its outputs (eval mode) are
            extracted too, as ``extra["train_z"]`` and ``extra["test_z"]``.

    Returns:
        ``(features, encoder_hash, hit)`` where ``hit`` says whether the cache served it;
        the hash covers the projector too when there is one.
    """
    enc = encoder_hash(encoder)
    if projector is not None:
        enc = hashlib.sha256(f"{enc}|{encoder_hash(projector)}".encode()).hexdigest()
    key = hashlib.sha256(f"{enc}|{data.fingerprint}|backbone+projector".encode()).hexdigest()[:32]
    path = cache_dir / f"{key}.npz"
    names = ["train_x", "test_x"] + (["train_z", "test_z"] if projector is not None else [])
    arrays: dict[str, np.ndarray] = {}
    hit = path.exists()
    if hit:
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {n: z[n] for n in names}
        except (OSError, ValueError, KeyError, EOFError):
            hit = False  # a damaged cache entry is recomputed
    if not hit:
        head = None if projector is None else nn.Sequential(encoder, projector)
        for split, images in (("train", data.train_images), ("test", data.test_images)):
            arrays[f"{split}_x"] = extract(encoder, images, data.mean, data.std, device)
            if head is not None:
                arrays[f"{split}_z"] = extract(head, images, data.mean, data.std, device)
        if dist.is_main():
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            atomic_write_bytes(path, buf.getvalue())
    fs = FeatureSet(
        train_x=arrays["train_x"],
        train_y=data.train_labels.numpy(),
        test_x=arrays["test_x"],
        test_y=data.test_labels.numpy(),
        run=run,
        extra={k: v for k, v in arrays.items() if k.endswith("_z")},
    )
    return fs, enc, hit
