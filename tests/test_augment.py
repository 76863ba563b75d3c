"""Batched views: shapes, 1- and 3-channel input, determinism, exact identities, and the crop sampler
against torchvision's RandomResizedCrop.get_params."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp
from torchvision.transforms import RandomResizedCrop

from sslbench.augment import (
    CROP_ATTEMPTS,
    TwoViews,
    color,
    crop_and_flip,
    crop_sizes,
)
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


RATIO = (3 / 4, 4 / 3)
DRAWS = 100_000


def _torchvision_pixel_areas(scale: tuple[float, float], height: int, width: int) -> np.ndarray:
    torch.manual_seed(0)
    img = torch.empty(1, height, width)
    out = np.empty(DRAWS)
    for i in range(DRAWS):
        _, _, h, w = RandomResizedCrop.get_params(img, list(scale), list(RATIO))
        out[i] = h * w
    return out


def _clamped_areas(scale: tuple[float, float], gen: torch.Generator) -> np.ndarray:
    """The sampler this replaces: one draw, each side clamped to the image."""
    area = torch.rand(DRAWS, generator=gen) * (scale[1] - scale[0]) + scale[0]
    log_r = torch.rand(DRAWS, generator=gen) * (math.log(RATIO[1]) - math.log(RATIO[0])) + math.log(RATIO[0])
    r = torch.exp(log_r)
    return (torch.sqrt(area * r).clamp(max=1) * torch.sqrt(area / r).clamp(max=1)).double().numpy()


@pytest.mark.parametrize("scale,height,width", [
    ((0.2, 1.0), 224, 224), ((0.08, 1.0), 224, 224), ((0.2, 1.0), 28, 28), ((0.08, 1.0), 32, 48)])
def test_crop_area_distribution_is_torchvisions(scale, height, width):
    """100k draws: same mean area and a two-sample KS statistic at the level of two torchvision seeds (~0.004).

    Areas are compared in whole pixels (float32 fractions would break the ties of
    the discrete pixel areas); the clamped single draw fails the same check."""
    ref = _torchvision_pixel_areas(scale, height, width) / (height * width)
    w, h = crop_sizes(DRAWS, scale, RATIO, height, width, torch.Generator().manual_seed(1))
    ours = (torch.round(w.double() * width) * torch.round(h.double() * height)).numpy() / (height * width)
    assert abs(ours.mean() - ref.mean()) < 0.003
    assert ks_2samp(ours, ref).statistic < 0.01
    clamped = _clamped_areas(scale, torch.Generator().manual_seed(1))
    assert clamped.mean() - ref.mean() > 0.03 and ks_2samp(clamped, ref).statistic > 0.05


def test_crop_sizes_keep_the_first_fitting_candidate_and_fall_back_to_the_centre():
    n = 4000
    w, h = crop_sizes(n, (0.2, 1.0), RATIO, 32, 32, torch.Generator().manual_seed(2))
    assert (w <= 1).all() and (h <= 1).all()
    aspect = w / h
    assert (aspect > RATIO[0] - 1e-5).all() and (aspect < RATIO[1] + 1e-5).all()
    # No candidate fits: torchvision's central fallback, whole image or the largest crop at the nearest ratio.
    for scale, ratio, height, width, expected_w, expected_h in [
        ((1.2, 1.3), RATIO, 16, 16, 1.0, 1.0),              # image ratio inside the range: whole image
        ((0.999, 1.0), (3.0, 4.0), 16, 16, 1.0, 1.0 / 3.0),  # image narrower than the range: full width
        ((0.999, 1.0), (0.5, 0.6), 10, 40, 0.6 / 4.0, 1.0),  # image wider than the range: full height
    ]:
        w, h = crop_sizes(n, scale, ratio, height, width, torch.Generator().manual_seed(3))
        assert torch.allclose(w, torch.full((n,), expected_w)) and torch.allclose(h, torch.full((n,), expected_h))


def test_crop_sizes_first_fitting_candidate_by_hand():
    """Rebuild the candidates from the same generator and pick the first fit with a loop."""
    n, scale = 64, (0.5, 1.0)
    gen = torch.Generator().manual_seed(4)
    area = torch.rand(n * CROP_ATTEMPTS, generator=gen).view(n, CROP_ATTEMPTS) * 0.5 + 0.5
    log_r = (torch.rand(n * CROP_ATTEMPTS, generator=gen) * (math.log(RATIO[1]) - math.log(RATIO[0]))
             + math.log(RATIO[0])).view(n, CROP_ATTEMPTS)
    w, h = crop_sizes(n, scale, RATIO, 20, 20, torch.Generator().manual_seed(4))
    for i in range(n):
        for a, lr in zip(area[i].tolist(), log_r[i].tolist()):
            cw, ch = math.sqrt(a * math.exp(lr)), math.sqrt(a / math.exp(lr))
            if round(cw * 20) <= 20 and round(ch * 20) <= 20:
                break
        else:
            cw, ch = 1.0, 1.0
        assert w[i].item() == pytest.approx(min(cw, 1.0), rel=1e-5)
        assert h[i].item() == pytest.approx(min(ch, 1.0), rel=1e-5)
