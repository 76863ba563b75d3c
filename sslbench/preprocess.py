"""Match the input images to what an external encoder was trained on.

Three choices, each recorded with every result:

- size: ``image_size`` resizes the shorter side to ``resize`` (default ``image_size``)
  and centre-crops ``image_size`` square, the evaluation transform of the ImageNet
  SSL releases (``Resize(256)``, ``CenterCrop(224)``, e.g. facebookresearch/dino
  ``eval_linear.py``) on tensors: bilinear with antialiasing;
- normalisation: the dataset's own statistics (sslbench's default), ImageNet's
  (``mean=(0.485, 0.456, 0.406)``, ``std=(0.229, 0.224, 0.225)``, torchvision's
  ``transforms._presets.ImageClassification``), none, or given numbers;
- channels: grey images are replicated to 3 channels for a 3-channel model
  (as torchvision's ``Grayscale(num_output_channels=3)``), before normalising.

With the defaults, :meth:`ResolvedInput.__call__` is exactly
:func:`sslbench.augment.normalize`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torchvision.transforms.functional as TF

from sslbench.errors import SslbenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NAMED = ("dataset", "imagenet", "none")

Stats = tuple[tuple[float, ...], tuple[float, ...]]


def parse_normalize(text: str) -> str | Stats:
    """Parse ``--normalize``: ``dataset``, ``imagenet``, ``none``, or ``MEAN,STD``.

    ``MEAN,STD`` is a comma-separated list of an even count of numbers: the first
    half are the per-channel means, the second half the stds, in ``[0, 1]`` pixel
    scale (``0.5,0.25`` for one channel; six numbers for RGB).

    Raises:
        SslbenchError: for anything else, or a std that is not positive.
    """
    text = text.strip()
    if text.lower() in NAMED:
        return text.lower()
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or len(values) % 2:
        raise SslbenchError(f"--normalize {text!r}: use dataset, imagenet, none, or MEAN,STD numbers "
                            "(an even count: means then stds, e.g. 0.5,0.25 or 0.485,0.456,0.406,0.229,0.224,0.225)")
    half = len(values) // 2
    mean, std = tuple(values[:half]), tuple(values[half:])
    if min(std) <= 0:
        raise SslbenchError(f"--normalize {text!r}: every std must be positive")
    return mean, std


@dataclass(frozen=True)
class InputSpec:
    """What the encoder expects as input, as asked for on the command line.

    Attributes:
        image_size: Side of the square input; ``None`` keeps the dataset's images as they are.
        resize: Shorter side before the centre crop (default ``image_size``); needs ``image_size``.
        normalize: ``"dataset"``, ``"imagenet"``, ``"none"`` or ``(mean, std)``.
        channels: Input channels of the encoder; ``None`` means the dataset's.
    """

    image_size: int | None = None
    resize: int | None = None
    normalize: str | Stats = "dataset"
    channels: int | None = None

    def __post_init__(self) -> None:
        if self.image_size is not None and self.image_size < 1:
            raise SslbenchError(f"--image-size must be a positive number of pixels, got {self.image_size}")
        if self.resize is not None and (self.image_size is None or self.resize < self.image_size):
            raise SslbenchError(f"resize {self.resize} needs an --image-size no larger than it")
        if isinstance(self.normalize, str) and self.normalize not in NAMED:
            raise SslbenchError(f"normalize {self.normalize!r}: use one of {', '.join(NAMED)} or (mean, std)")
        if self.channels is not None and self.channels < 1:
            raise SslbenchError(f"channels must be positive, got {self.channels}")

    def resolve(self, data_channels: int, data_mean: tuple[float, ...], data_std: tuple[float, ...],
                dataset: str = "the dataset") -> ResolvedInput:
        """The concrete transform for a dataset: channel counts and statistics filled in.

        Raises:
            SslbenchError: when the channels cannot be matched (only grey -> 3 is done) or the
                statistics have neither 1 nor the model's channel count.
        """
        model_channels = self.channels or data_channels
        if model_channels != data_channels and not (data_channels == 1 and model_channels == 3):
            raise SslbenchError(f"the encoder takes {model_channels}-channel images but {dataset} has "
                                f"{data_channels}; sslbench only replicates grey images to 3 channels")
        if self.normalize == "dataset":
            mean, std = tuple(data_mean), tuple(data_std)
        elif self.normalize == "imagenet":
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        elif self.normalize == "none":
            mean, std = (0.0,), (1.0,)
        else:
            mean, std = self.normalize  # type: ignore[misc]
        for what, v in (("mean", mean), ("std", std)):
            if len(v) not in (1, model_channels):
                raise SslbenchError(f"--normalize {self.normalize_name}: {len(v)} {what} values for a "
                                    f"{model_channels}-channel encoder (give 1 or {model_channels})")
        return ResolvedInput(self.image_size, self.resize or self.image_size, self.normalize_name,
                             tuple(map(float, mean)), tuple(map(float, std)), data_channels, model_channels)

    @property
    def normalize_name(self) -> str:
        """``"dataset"``, ``"imagenet"``, ``"none"`` or ``"custom"``."""
        return self.normalize if isinstance(self.normalize, str) else "custom"

    def to_record(self) -> dict[str, Any]:
        """The request as plain JSON values."""
        norm = self.normalize if isinstance(self.normalize, str) else {"mean": list(self.normalize[0]),
                                                                         "std": list(self.normalize[1])}
        return {"image_size": self.image_size, "resize": self.resize, "normalize": norm, "channels": self.channels}


@dataclass(frozen=True)
class ResolvedInput:
    """The input transform for one dataset and encoder: uint8 ``(B, C, H, W)`` -> float.

    Attributes:
        image_size: Output side, or ``None`` for the images' own size.
        resize: Shorter side before the centre crop (``None`` with ``image_size``).
        normalize: Name of the statistics (``dataset``, ``imagenet``, ``none``, ``custom``).
        mean: Per-channel (or one) mean subtracted, ``[0, 1]`` scale.
        std: Per-channel (or one) std divided by.
        data_channels: Channels of the dataset.
        model_channels: Channels of the encoder (3 for 1 means grey is replicated).
    """

    image_size: int | None
    resize: int | None
    normalize: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    data_channels: int
    model_channels: int

    @property
    def replicates_grey(self) -> bool:
        return self.data_channels == 1 and self.model_channels == 3

    @property
    def changes_pixels(self) -> bool:
        """Whether it does more than normalise (resize, crop, replicate)."""
        return self.image_size is not None or self.replicates_grey

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` float in ``[0, 1]`` -> ``(B, model_channels, S, S)`` normalised float."""
        if self.image_size is not None:
            if min(x.shape[-2:]) != self.resize:
                x = TF.resize(x, [self.resize], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
            if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
                x = TF.center_crop(x, [self.image_size])
        if self.replicates_grey:
            x = x.expand(-1, 3, -1, -1)
        m = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - m) / s

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, C, H, W)`` -> the float batch the encoder takes."""
        if images.dtype != torch.uint8:
            raise SslbenchError(f"images must be uint8, got {images.dtype}")
        return self.from_unit(images.float() / 255.0)

    def to_record(self) -> dict[str, Any]:
        """What was done to the images, as plain JSON values (for the result's record)."""
        return {"image_size": self.image_size, "resize": self.resize, "interpolation": "bilinear-antialias"
                if self.image_size is not None else None, "normalize": self.normalize, "mean": list(self.mean),
                "std": list(self.std), "data_channels": self.data_channels, "model_channels": self.model_channels,
                "grey_to_rgb": self.replicates_grey}
