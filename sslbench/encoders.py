"""External encoders for ``sslbench eval --encoder``: TorchScript files and state dicts.

A TorchScript file (detected by its ``constants.pkl`` entry) is loaded with
``torch.jit.load`` on the CPU; a state dict is loaded with ``weights_only=True``
(a pickle that carries code is refused) into a registered backbone named by
``--arch``. sslbench's own ``checkpoint.pt`` works too (its ``model["backbone.*"]``
entries).
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslbench.backbones import build_backbone
from sslbench.errors import SslbenchError
from sslbench.features import extract
from sslbench.io import load_checkpoint
from sslbench.protocol import check_features
from sslbench.registry import registry
from sslbench.types import FeatureSet, ImageData, Split


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
    fs = FeatureSet(Split(arrays["train"], data.train_labels.numpy()), Split(arrays["test"], data.test_labels.numpy()),
                    run=path.name)
    check_features(fs)
    return fs
