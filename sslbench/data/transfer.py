"""Transfer sets for few-shot transfer: another dataset, matched to the pretraining images."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sslbench.types import ImageData


def match_images(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """Resize (bilinear, antialiased) and convert uint8 images to ``channels`` x ``size`` x ``size``.

    RGB to one channel takes the mean of the three; one channel to RGB repeats it.

    Args:
        images: ``(N, C, H, W)`` uint8.
        channels: Target channel count (1 or 3, or equal to ``C``).
        size: Target side in pixels.

    Returns:
        ``(N, channels, size, size)`` uint8.
    """
    x = images.float()
    if x.shape[1] != channels:
        if channels == 1:
            x = x.mean(dim=1, keepdim=True)
        elif x.shape[1] == 1:
            x = x.expand(-1, channels, -1, -1)
        else:
            raise ValueError(f"cannot convert {x.shape[1]}-channel images to {channels} channels")
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp_(0, 255).to(torch.uint8).contiguous()


def transfer_set(target: ImageData, like: ImageData) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (train and test) of ``target``, matched to ``like``'s channels and size, with labels.

    Args:
        target: The transfer dataset (e.g. ``digits``).
        like: The pretraining dataset.

    Returns:
        ``(images (N, C, H, W) uint8, labels (N,) int64)``.
    """
    images = torch.cat([target.train_images, target.test_images])
    labels = torch.cat([target.train_labels, target.test_labels]).to(torch.int64)
    return match_images(images, like.channels, like.image_size), labels
