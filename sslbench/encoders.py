"""External encoders for ``sslbench eval --encoder``: TorchScript files and checkpoints of many libraries.

A TorchScript file (detected by its ``constants.pkl`` entry) is loaded with
``torch.jit.load`` on the CPU. Anything else is read with ``weights_only=True``
(a pickle that carries code is refused) and its backbone weights are found by
:mod:`sslbench.checkpoint_formats` (solo-learn, lightly, VISSL, DINO, MoCo v2/v3,
VICReg, Barlow Twins, sslbench's own ``checkpoint.pt``, a plain state dict, or
``--key-prefix``) and loaded into the architecture named by ``--arch``: a
registered backbone, ``torchvision:NAME`` or ``timm:NAME``
(:func:`sslbench.backbones.build_backbone`). The load is refused unless every
weight of the model is found with its shape; what was left out is reported.
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslbench.backbones import build_backbone, is_named_architecture
from sslbench.checkpoint_formats import (
    BENIGN_MISSING,
    USER_PREFIX,
    Selection,
    adapt_model,
    read_checkpoint,
    select_backbone,
    top_level_summary,
)
from sslbench.errors import SslbenchError
from sslbench.features import extract
from sslbench.preprocess import InputSpec, ResolvedInput
from sslbench.protocol import check_features
from sslbench.registry import registry
from sslbench.types import FeatureSet, ImageData, Split

TORCHSCRIPT = "torchscript"


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


@dataclass(frozen=True)
class EncoderInfo:
    """What :func:`load_encoder` loaded (recorded with every result).

    Attributes:
        format: ``"torchscript"`` or the checkpoint layout (``"solo-learn"``, ``"dino"``, ...,
            ``"state_dict"``, ``"key_prefix"``, ``"discovered_prefix"``).
        arch: The architecture (``None`` for TorchScript).
        width: Width of a registered backbone (``None`` otherwise).
        in_channels: Image channels the encoder takes (``None``: unknown, TorchScript without a conv).
        key_prefix: The flattened key prefix stripped from the file's keys (``""``: none).
        loaded: Tensors loaded into the model.
        ignored: Tensors of the file outside the prefix (projector, heads, momentum copies).
        missing: Model keys absent from the file (only ``*.num_batches_tracked`` are let through).
        unexpected: Keys under the prefix the model does not have (e.g. ``fc.weight``).
        notes: What was adapted to reproduce the source model.
    """

    format: str
    arch: str | None = None
    width: int | None = None
    in_channels: int | None = None
    key_prefix: str = ""
    loaded: int = 0
    ignored: int = 0
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> Any:
        """``info["format"]``: read access by name, as for the dict this record replaces."""
        return getattr(self, key)

    def report(self) -> str:
        """One line: format, prefix, what was loaded, left out and adapted."""
        if self.format == TORCHSCRIPT:
            return f"TorchScript module (code and weights from the file; {self.in_channels or '?'} input channel(s))"
        parts = [f"{self.format} checkpoint: {self.loaded} tensors"
                 + (f" under {self.key_prefix!r}" if self.key_prefix else "") + f" into {self.arch}"]
        parts.append(f"ignored {self.ignored} other tensors" if self.ignored else "nothing else in the file")
        parts.append(f"missing {len(self.missing)} ({_few(list(self.missing))})" if self.missing else "missing none")
        parts.append(f"unexpected {len(self.unexpected)} ({_few(list(self.unexpected))})"
                     if self.unexpected else "unexpected none")
        return "; ".join(parts + list(self.notes))

    def to_record(self, n: int = 10) -> dict[str, Any]:
        """Plain JSON values (key lists cut at ``n``, with their full counts)."""
        return {"format": self.format, "arch": self.arch, "width": self.width, "in_channels": self.in_channels,
                "key_prefix": self.key_prefix, "loaded": self.loaded, "ignored": self.ignored,
                "n_missing": len(self.missing), "missing": list(self.missing[:n]),
                "n_unexpected": len(self.unexpected), "unexpected": list(self.unexpected[:n]),
                "notes": list(self.notes), "report": self.report()}


def _default_width(arch: str) -> int:
    default = inspect.signature(registry("backbones").get(arch)).parameters.get("width")
    if default is None or default.default is inspect.Parameter.empty:
        raise SslbenchError(f"backbone {arch!r} has no default width; pass --width")
    return int(default.default)


def _first_line(e: BaseException) -> str:
    """The informative line of an exception (torch appends paragraphs and "Could this ... be improved?")."""
    text = str(e).split("(Could this error message be improved?")[0]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    return lines[-1] if lines[0].startswith("The following operation failed") else lines[0]


def _input_channels(module: nn.Module) -> int | None:
    """Input channels of a module whose first 4-D weight is its first convolution (CNNs, ViT patch embedding)."""
    for t in module.state_dict().values():
        if t.ndim == 4 and t.is_floating_point():
            return int(t.shape[1])
    return None


def _load_torchscript(path: Path) -> tuple[nn.Module, EncoderInfo]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in torch >= 2.9
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # noqa: BLE001 - torch.jit raises RuntimeError, torch.jit.Error, ... on bad archives
        raise SslbenchError(f"TorchScript file {path} cannot be loaded: it is a zip with constants.pkl but "
                            f"not a TorchScript archive torch can read ({_first_line(e)})") from None
    return module.eval(), EncoderInfo(TORCHSCRIPT, in_channels=_input_channels(module))


def _build(arch: str, width: int | None, in_channels: int) -> tuple[nn.Module, int | None]:
    """The model named by ``--arch``, and the width it was built with."""
    if not is_named_architecture(arch):
        registry("backbones").get(arch)  # unknown arch -> did you mean
        width = _default_width(arch) if width is None else width
    try:
        return build_backbone(arch, in_channels, width), width
    except (ValueError, TypeError) as e:
        raise SslbenchError(f"cannot build backbone {arch!r} with width {width}: {e}") from None


def _shape_errors(state: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> list[str]:
    return [k for k, v in want.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]


def _grey_model_fits_rgb(state: dict[str, torch.Tensor], want: dict[str, torch.Tensor], bad: list[str]) -> bool:
    """Whether the only misfit is the first convolution taking 3 channels where the model takes 1."""
    if len(bad) != 1:
        return False
    got, exp = tuple(state[bad[0]].shape), tuple(want[bad[0]].shape)
    return len(got) == 4 and got[1] == 3 and exp[1] == 1 and got[0] == exp[0] and got[2:] == exp[2:]


def _refuse_shapes(path: Path, arch: str, width: int | None, in_channels: int,
                   state: dict[str, torch.Tensor], want: dict[str, torch.Tensor], bad: list[str]) -> SslbenchError:
    k = bad[0]
    got, exp = tuple(state[k].shape), tuple(want[k].shape)
    hint = "(check --width and --dataset)"
    if len(got) == 4 and got[-2:] != exp[-2:] and k.endswith("conv1.weight"):
        stems = {(3, 3): "a CIFAR stem (3x3)", (7, 7): "an ImageNet stem (7x7)"}
        stem = stems.get(got[-2:], f"a {got[-2]}x{got[-1]} stem")
        hint = (f"(the file has {stem}: use --arch resnet18/resnet50 for CIFAR stems, "
                "torchvision:NAME for ImageNet ones)")
    where = f" with width {width}" if width is not None else ""
    return SslbenchError(
        f"{path} does not fit backbone {arch!r}{where} and {in_channels} input channel(s): "
        f"{k} has shape {got} in the file but {exp} in the model"
        + (f" (+{len(bad) - 1} more)" if len(bad) > 1 else "") + f" {hint}")


def _refuse_missing(path: Path, arch: str, sel: Selection, want: dict[str, torch.Tensor], obj: dict) -> SslbenchError:
    missing = [k for k in want if k not in sel.state and not k.endswith(BENIGN_MISSING)]
    unexpected = [k for k in sel.state if k not in want]
    parts = [f"missing keys {_few(missing)}"] + ([f"unexpected keys {_few(unexpected)}"] if unexpected else [])
    if sel.layout == USER_PREFIX and not sel.state:
        return SslbenchError(f"--key-prefix {sel.prefix!r} matches no tensor in {path} (its top-level keys: "
                             f"{top_level_summary(obj)}); nested dicts are joined with '.', "
                             "e.g. 'state_dict.backbone.'")
    read = (f"read as {sel.layout} under {sel.prefix!r}" if sel.prefix or sel.state
            else f"its top-level keys: {top_level_summary(obj)}")
    return SslbenchError(f"{path} is not a state dict of backbone {arch!r}: {'; '.join(parts)} ({read}; "
                         "check --arch, or name the weights' prefix with --key-prefix)")


def load_encoder(
    path: str | Path, arch: str | None, width: int | None, in_channels: int, key_prefix: str | None = None
) -> tuple[nn.Module, EncoderInfo]:
    """Load an external encoder: TorchScript, or a checkpoint of ``arch`` in any known layout.

    Args:
        path: The file.
        arch: ``--arch``: a registered backbone, ``torchvision:NAME`` or ``timm:NAME``
            (needed unless the file is TorchScript).
        width: ``--width`` of a registered backbone (default: its default).
        in_channels: Image channels of the dataset. A registered backbone is built for
            them, or for 3 when the file's first convolution takes 3 and the data is grey.
        key_prefix: ``--key-prefix``: the flattened prefix of the backbone weights
            (e.g. ``"teacher.module.backbone."``); default: recognise the layout.

    Returns:
        ``(encoder, info)``: the module in eval mode on the CPU, and an :class:`EncoderInfo`
        (``info.in_channels`` is what the model takes: feed it to :class:`InputSpec`).

    Raises:
        SslbenchError: for a missing, empty or corrupt file, a directory, a pickle that
            carries code, weights that are not all found or do not fit ``arch``, a missing ``--arch``.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size and is_torchscript(path):
        return _load_torchscript(path)
    obj = read_checkpoint(path)  # weights_only=True: code is refused here
    if not arch:
        raise SslbenchError(f"{path} is a checkpoint, not TorchScript: name its architecture with --arch "
                            f"(one of {', '.join(registry('backbones').names())}, torchvision:NAME or timm:NAME)")
    model, width = _build(arch, width, in_channels)
    fit, best = select_backbone(obj, model, path, key_prefix)
    if fit is None:
        raise _refuse_missing(path, arch, best, model.state_dict(), obj)
    want = model.state_dict()
    bad = _shape_errors(fit.state, want)
    if bad and _grey_model_fits_rgb(fit.state, want, bad) and not is_named_architecture(arch):
        in_channels = 3  # an RGB model: built for 3 channels, grey images get replicated
        model, width = _build(arch, width, in_channels)
        want, bad = model.state_dict(), []
    if bad:
        raise _refuse_shapes(path, arch, width, getattr(model, "in_channels", in_channels), fit.state, want, bad)
    notes = fit.notes + adapt_model(fit.layout, model, fit.state)
    load = {k: v for k, v in fit.state.items() if k in want}
    model.load_state_dict(load, strict=False)
    info = EncoderInfo(fit.layout, arch, width if not is_named_architecture(arch) else None,
                       getattr(model, "in_channels", in_channels), fit.prefix, len(load), fit.ignored,
                       tuple(k for k in want if k not in load), tuple(k for k in fit.state if k not in want), notes)
    return model.eval(), info


class _Checked(nn.Module):
    """Runs ``encoder`` on prepared inputs and turns whatever goes wrong into one line.

    ``extract`` hands it the batch it would hand the encoder; with an input transform
    that batch is in ``[0, 1]`` and the transform is applied here.
    """

    def __init__(self, encoder: nn.Module, where: str, transform: ResolvedInput | None = None) -> None:
        super().__init__()
        self.encoder, self.where, self.transform = encoder, where, transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform is not None:
            x = self.transform.from_unit(x)
        try:
            out = self.encoder(x)
        except Exception as e:  # noqa: BLE001 - any failure of a foreign forward is the encoder's, not ours
            raise SslbenchError(f"{self.where}: {_first_line(e)}") from None
        if isinstance(out, (tuple, list)):
            shapes = ", ".join(str(tuple(o.shape)) if isinstance(o, torch.Tensor) else type(o).__name__ for o in out)
            raise SslbenchError(f"{self.where}: it returned a {type(out).__name__} of {len(out)} ({shapes}); "
                                "sslbench needs one (B, D) tensor: export the backbone alone")
        if not isinstance(out, torch.Tensor):
            raise SslbenchError(f"{self.where}: it returned a {type(out).__name__}; sslbench needs one (B, D) tensor")
        return out


def encoder_features(
    encoder: nn.Module, data: ImageData, device: str, path: Path, spec: InputSpec | None = None
) -> FeatureSet:
    """Train/test features of ``encoder`` on ``data``; a failing forward pass is an SslbenchError.

    Args:
        encoder: ``(B, C, H, W) -> (B, D)``.
        data: The dataset.
        device: Where to run.
        path: The encoder file, for messages.
        spec: How to prepare the images (:class:`InputSpec`); default: the dataset's
            normalisation, images as they are.
    """
    transform = (spec or InputSpec()).resolve(data.channels, data.mean, data.std, data.name)
    arrays = {}
    for split, images in (("train", data.train_images), ("test", data.test_images)):
        where = f"encoder {path} failed on {data.name} images of shape (B, {', '.join(map(str, images.shape[1:]))})"
        try:
            if transform.changes_pixels or transform.normalize != "dataset":
                side = transform.image_size or max(images.shape[-2:])
                batch = max(8, min(1024, (1024 * 32 * 32) // (side * side)))  # bound the pixels per batch
                ones = (1.0,) * data.channels
                arrays[split] = extract(_Checked(encoder, where, transform), images, (0.0,) * data.channels, ones,
                                        device, batch_size=batch)
            else:  # exactly the extraction sslbench has always done
                arrays[split] = extract(_Checked(encoder, where), images, data.mean, data.std, device)
        except (RuntimeError, ValueError, TypeError) as e:
            raise SslbenchError(f"{where}: {_first_line(e)}") from None
        if arrays[split].ndim != 2:
            raise SslbenchError(f"encoder {path} returned {split} features of shape {arrays[split].shape}; "
                                "sslbench needs (N, D)")
    fs = FeatureSet(Split(arrays["train"], data.train_labels.numpy()), Split(arrays["test"], data.test_labels.numpy()),
                    run=path.name)
    check_features(fs)
    return fs
