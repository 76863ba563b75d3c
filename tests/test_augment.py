"""Batched views: shapes, 1- and 3-channel input, determinism, and exact identities."""

import torch

from sslbench.augment import TwoViews, color, crop_and_flip
from sslbench.method import ViewConfig

NO_AUG = ViewConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0)


def _images(c: int) -> torch.Tensor:
    return torch.randint(0, 256, (16, c, 12, 12), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def test_shapes_and_determinism_for_1_and_3_channels():
    for c in (1, 3):
        views = TwoViews(ViewConfig(blur_p=0.5, solarize_p=0.5), ViewConfig(), (0.5,) * c, (0.25,) * c)
        a1, b1 = views(_images(c), torch.Generator().manual_seed(3))
        a2, b2 = views(_images(c), torch.Generator().manual_seed(3))
        assert a1.shape == (16, c, 12, 12) and b1.shape == (16, c, 12, 12)
        assert torch.equal(a1, a2) and torch.equal(b1, b2)
        assert not torch.equal(a1, b1)


def test_full_crop_without_flip_is_identity():
    x = _images(1).float() / 255
    y = crop_and_flip(x, NO_AUG, torch.Generator().manual_seed(0))
    assert torch.allclose(x, y, atol=1e-5)


def test_flip_mirrors_exactly():
    x = _images(3).float() / 255
    cfg = ViewConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=1.0)
    y = crop_and_flip(x, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(y, x.flip(-1), atol=1e-5)


def test_jitter_off_is_identity_and_on_stays_in_range():
    x = _images(3).float() / 255
    assert torch.allclose(color(x, NO_AUG, torch.Generator().manual_seed(0)), x, atol=1e-6)
    y = color(x, ViewConfig(jitter_p=1.0, brightness=0.9, contrast=0.9), torch.Generator().manual_seed(0))
    assert y.min() >= 0 and y.max() <= 1 and not torch.equal(x, y)
