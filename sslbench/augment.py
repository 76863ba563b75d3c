"""Batched two-view augmentation on tensors (no per-image PIL transforms).

All random parameters of a batch are drawn at once from a ``torch.Generator``;
the crop and flip are one ``affine_grid`` + ``grid_sample``; colour jitter,
grayscale, blur and solarisation are per-sample tensor arithmetic. Nothing
assumes three channels: saturation and grayscale only apply to RGB images.
The view recipes follow SimCLR (Chen et al. 2020, App. A), BYOL (Grill et al.
2020) and VICReg (Bardes et al. 2022), with jitter ops in a fixed order
(brightness, contrast, saturation) rather than torchvision's random order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sslbench.method import ViewConfig


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (hi - lo) + lo


def _coin(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) < p


#: Candidate (area, aspect ratio) draws per crop before the fallback, as torchvision's RandomResizedCrop.
CROP_ATTEMPTS = 10


def crop_sizes(
    n: int, scale: tuple[float, float], ratio: tuple[float, float], height: int, width: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sizes of ``n`` random resized crops, drawn as torchvision's ``RandomResizedCrop.get_params`` draws them.

    Each crop tries up to :data:`CROP_ATTEMPTS` candidates with an area uniform in
    ``scale`` (fraction of the image) and an aspect ratio (width / height, in
    pixels) log-uniform in ``ratio``, and keeps the first that fits in the image
    once rounded to whole pixels; clamping instead would pile the misfits onto the
    border and raise the mean area (0.59 against 0.55 at ``scale=(0.2, 1)``). When
    none fits, the crop is central: the whole image if its own aspect ratio lies
    in ``ratio``, else the largest crop at the nearest bound. All candidates are
    drawn at once, so the draw count does not depend on the outcome.

    Args:
        n: Number of crops.
        scale: Range of the crop area as a fraction of the image.
        ratio: Range of the aspect ratio.
        height: Image height in pixels.
        width: Image width in pixels.
        gen: CPU generator.

    Returns:
        ``(w, h)``: ``(n,)`` crop width and height as fractions of the image's, in ``(0, 1]``.
    """
    area = _uniform(n * CROP_ATTEMPTS, *scale, gen).view(n, CROP_ATTEMPTS)
    log_ratio = _uniform(n * CROP_ATTEMPTS, math.log(ratio[0]), math.log(ratio[1]), gen).view(n, CROP_ATTEMPTS)
    aspect = torch.exp(log_ratio) * (height / width)  # pixel aspect ratio -> ratio of the fractions
    w, h = torch.sqrt(area * aspect), torch.sqrt(area / aspect)
    fits = (w * width < width + 0.5) & (h * height < height + 0.5)  # round(w * width) <= width
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # the first candidate that fits
    w, h = w.gather(1, first).squeeze(1).clamp(max=1.0), h.gather(1, first).squeeze(1).clamp(max=1.0)
    image_ratio = width / height
    fall_w, fall_h = 1.0, 1.0
    if image_ratio < min(ratio):
        fall_h = image_ratio / min(ratio)
    elif image_ratio > max(ratio):
        fall_w = max(ratio) / image_ratio
    any_fits = fits.any(dim=1)
    return torch.where(any_fits, w, fall_w), torch.where(any_fits, h, fall_h)


def crop_and_flip(x: torch.Tensor, cfg: ViewConfig, gen: torch.Generator) -> torch.Tensor:
    """Random resized crop plus horizontal flip as one batched resampling.

    Crop sizes come from :func:`crop_sizes` (torchvision's sampler); the
    position is uniform over the places the crop fits (central for a fallback).

    Args:
        x: ``(N, C, H, W)`` float images.
        cfg: View config (``crop_scale``, ``crop_ratio``, ``flip_p``).
        gen: CPU generator for the parameters.

    Returns:
        ``(N, C, H, W)`` crops resized back to ``H x W`` (bilinear).
    """
    n = x.shape[0]
    w, h = crop_sizes(n, cfg.crop_scale, cfg.crop_ratio, x.shape[2], x.shape[3], gen)
    cx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=gen) * 2 - 1) * (1 - h)
    sign = torch.where(_coin(n, cfg.flip_p, gen), -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def color(x: torch.Tensor, cfg: ViewConfig, gen: torch.Generator) -> torch.Tensor:
    """Per-sample brightness, contrast, saturation jitter and random grayscale.

    Args:
        x: ``(N, C, H, W)`` float images in ``[0, 1]``; ``C`` is 1 or 3.

    Returns:
        ``(N, C, H, W)`` in ``[0, 1]``.
    """
    n = x.shape[0]
    shape = (n, 1, 1, 1)
    apply = _coin(n, cfg.jitter_p, gen)

    def factor(strength: float) -> torch.Tensor:
        f = _uniform(n, 1 - strength, 1 + strength, gen)
        return torch.where(apply, f, torch.ones(n)).view(shape).to(x.device, x.dtype)

    b, c, s = factor(cfg.brightness), factor(cfg.contrast), factor(cfg.saturation)
    x = (x * b).clamp(0, 1)
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * c + mean).clamp(0, 1)
    if x.shape[1] == 3:
        x = ((x - _gray(x)) * s + _gray(x)).clamp(0, 1)
        gray = _coin(n, cfg.grayscale_p, gen).view(shape).to(x.device)
        x = torch.where(gray, _gray(x).expand_as(x), x)
    return x


def blur(x: torch.Tensor, cfg: ViewConfig, gen: torch.Generator) -> torch.Tensor:
    """Per-sample Gaussian blur (separable, grouped convolution), applied with ``blur_p``.

    Args:
        x: ``(N, C, H, W)`` float images.

    Returns:
        ``(N, C, H, W)``.
    """
    n, c, h, w = x.shape
    if cfg.blur_p <= 0:
        return x
    size = max(3, (int(0.1 * h) // 2) * 2 + 1)
    sigma = _uniform(n, *cfg.blur_sigma, gen)
    offsets = torch.arange(size, dtype=torch.float32) - size // 2
    kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)
    identity = (offsets == 0).float().expand(n, size)
    kernel = torch.where(_coin(n, cfg.blur_p, gen)[:, None], kernel, identity)
    kernel = kernel.to(x.device, x.dtype).repeat_interleave(c, 0)  # (N*C, size)
    y = x.reshape(1, n * c, h, w)
    pad = size // 2
    y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode="reflect"), kernel.view(n * c, 1, 1, size), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), kernel.view(n * c, 1, size, 1), groups=n * c)
    return y.view(n, c, h, w)


def solarize(x: torch.Tensor, cfg: ViewConfig, gen: torch.Generator) -> torch.Tensor:
    """Invert pixels above 0.5 in a random subset of the batch (BYOL)."""
    if cfg.solarize_p <= 0:
        return x
    apply = _coin(x.shape[0], cfg.solarize_p, gen).view(-1, 1, 1, 1).to(x.device)
    return torch.where(apply & (x >= 0.5), 1.0 - x, x)


class TwoViews:
    """Turns a uint8 batch into two normalised augmented views.

    Args:
        view1: Config of the first view.
        view2: Config of the second view (asymmetric recipes such as BYOL differ).
        mean: Per-channel mean in ``[0, 1]`` scale.
        std: Per-channel std.
    """

    def __init__(self, view1: ViewConfig, view2: ViewConfig, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.views = (view1, view2)
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)

    def one(self, x: torch.Tensor, cfg: ViewConfig, gen: torch.Generator) -> torch.Tensor:
        """One augmented, normalised view of ``x`` (float ``(N, C, H, W)`` in ``[0, 1]``)."""
        x = crop_and_flip(x, cfg, gen)
        x = color(x, cfg, gen)
        x = blur(x, cfg, gen)
        x = solarize(x, cfg, gen)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, C, H, W)`` uint8 -> two ``(N, C, H, W)`` float views."""
        x = images.float().div_(255.0)
        return self.one(x, self.views[0], gen), self.one(x, self.views[1], gen)


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Un-augmented input for evaluation: uint8 ``(N, C, H, W)`` -> normalised float."""
    m = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255.0 - m) / s
