"""The collapse suite: label-free readings of frozen features and projector outputs.

Scale-aware, spectrum and geometry readings side by side (see
:mod:`sslbench.embedding_stats` for each formula and its paper): RankMe,
alpha-ReQ (this project's fit, with its R^2, and the authors' window), the std of
l2-normalised rows next to ``1/sqrt(D)``, VICReg's variance hinge with the fraction
of dead dimensions, the covariance spectrum with its collapsed-dimension count, its
total variance (``spread``), participation ratio (``effective_dims``) and stable
rank, uniformity and the Wasserstein-2 distance to an isotropic Gaussian, the
alignment of positive pairs and LiDAR over several views per image, both made with
the method's own augmentations. All in float64 on a seeded subsample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from sslbench.embedding_stats import (
    COLLAPSE_STATUSES,
    alignment,
    alpha_req,
    alpha_req_authors,
    collapse_status,
    collapsed_dimension_count,
    covariance_spectrum,
    lidar,
    participation_ratio,
    rankme,
    stable_rank,
    std_of_l2_normalized,
    uniformity,
    variance_hinge,
    wasserstein_uniformity,
)
from sslbench.errors import SslbenchError
from sslbench.protocol import Evaluation, Protocol
from sslbench.records import NOT_APPLICABLE
from sslbench.types import Direction, FeatureSet

#: Metric prefix of each layer read.
PREFIXES = {"backbone": "", "projector": "z_"}


def subsample_rows(x: np.ndarray, max_samples: int, seed: int) -> np.ndarray:
    """A seeded subsample of at most ``max_samples`` rows, in float64.

    Args:
        x: ``(N, D)`` array.
        max_samples: Largest number of rows kept.
        seed: Seed of the draw (without replacement, rows kept in order).

    Returns:
        ``(min(N, max_samples), D)`` float64 array.
    """
    if len(x) > max_samples:
        idx = np.sort(np.random.default_rng(seed).choice(len(x), max_samples, replace=False))
        x = x[idx]
    return np.asarray(x, dtype=np.float64)


def collapse_metrics(z: np.ndarray, uniformity_samples: int = 2000) -> tuple[dict[str, float], np.ndarray]:
    """Every single-matrix reading of ``z`` and its covariance spectrum.

    Args:
        z: ``(N, D)`` float64 features, ``N >= 2``, already subsampled.
        uniformity_samples: Leading rows used for uniformity (all pairs among them).

    Returns:
        ``(metrics, spectrum)``: metrics ``rankme``, ``std_l2``, ``std_l2_ref`` (``1/sqrt(D)``),
        ``dim``, ``alpha_req``, ``alpha_req_r2``, ``alpha_req_authors``, ``alpha_req_authors_r2``,
        ``var_hinge``, ``dead_frac``, ``spectrum_collapsed_dims``, ``spread``, ``effective_dims``,
        ``stable_rank``, ``uniformity``, ``w2_uniformity``; spectrum ``(min(N, D),)`` decreasing.
    """
    d = z.shape[1]
    spectrum = covariance_spectrum(z)
    a, r2 = alpha_req(z)
    a_authors, r2_authors = alpha_req_authors(z)
    hinge, dead = variance_hinge(z)
    metrics = {
        "rankme": rankme(z),
        "std_l2": float(std_of_l2_normalized(torch.from_numpy(z))),
        "std_l2_ref": 1.0 / float(np.sqrt(d)),
        "dim": float(d),
        "alpha_req": a,
        "alpha_req_r2": r2,
        "alpha_req_authors": a_authors,
        "alpha_req_authors_r2": r2_authors,
        "var_hinge": hinge,
        "dead_frac": dead,
        "spectrum_collapsed_dims": float(collapsed_dimension_count(spectrum)),
        "spread": float(spectrum.sum()),
        "effective_dims": participation_ratio(spectrum),
        "stable_rank": stable_rank(spectrum),
        "uniformity": uniformity(z[:uniformity_samples]),
        "w2_uniformity": wasserstein_uniformity(z),
    }
    return metrics, spectrum


@dataclass
class Collapse(Protocol):
    """The collapse suite on a seeded subsample of the test split; labels unused.

    Reads the backbone features (unprefixed metrics, see :func:`collapse_metrics`)
    and, when the features carry projector outputs, the same readings prefixed
    ``z_``. With positive pairs (two views of the same images made with the
    method's augmentations) it adds ``alignment``/``z_alignment``.

    ``status`` is ``healthy``, ``dimensional`` or ``complete``
    (:func:`sslbench.embedding_stats.collapse_status`, the same rule the training
    monitor applies; no threshold depends on the width), judged on the projector
    outputs where the loss acts. With several views of a few test images it adds
    ``lidar``/``z_lidar``. Encoders without a projector (floors, external encoders)
    get ``status`` ``"n/a"`` and no code: post-ReLU backbone features all lie in
    the positive orthant, so their uncentred readings are small even when healthy
    (a random ConvNet at 84.9% linear reads std_l2 0.005 against 1/sqrt(256) =
    0.0625) and a threshold on them would misfire. The artifacts are the
    covariance spectra ``spectrum_backbone`` (and ``spectrum_projector``).

    Attributes:
        max_samples: Most test rows used for the spectrum readings (subsampled with the seed).
        uniformity_samples: Rows of that subsample used for uniformity (all pairs).
    """

    name: ClassVar[str] = "collapse"
    version: ClassVar[str] = "3"
    requires: ClassVar[frozenset[str]] = frozenset()
    metrics: ClassVar[dict[str, Direction]] = {
        "rankme": "higher",
        "std_l2": "higher",
        "uniformity": "lower",
        "z_rankme": "higher",
        "z_std_l2": "higher",
        "z_uniformity": "lower",
        "z_effective_dims": "higher",
        "z_w2_uniformity": "lower",
    }
    main_metric: ClassVar[str] = "rankme"
    labels: ClassVar[dict[str, tuple[str, ...]]] = {"status": COLLAPSE_STATUSES}
    #: RankMe lives on the scale of the feature dimension: allow 5% of its baseline.
    tolerances: ClassVar[dict[str, str]] = {"rankme": "5%", "z_rankme": "5%"}
    readings: ClassVar[tuple[str, ...]] = ("rankme", "z_rankme", "alpha_req", "z_alpha_req", "alpha_req_authors",
                                           "z_alpha_req_authors", "uniformity", "z_uniformity", "z_alignment",
                                           "effective_dims", "z_effective_dims", "stable_rank", "z_stable_rank",
                                           "w2_uniformity", "z_w2_uniformity", "lidar", "z_lidar")
    plots: ClassVar[dict[str, str]] = {"spectrum_backbone": "spectrum", "spectrum_projector": "spectrum"}

    max_samples: int = 10000
    uniformity_samples: int = 2000

    def __post_init__(self) -> None:
        if self.max_samples < 2 or self.uniformity_samples < 2:
            raise SslbenchError(
                f"collapse: max_samples and uniformity_samples must be >= 2, got "
                f"{self.max_samples} and {self.uniformity_samples}"
            )

    def evaluate(self, features: FeatureSet, seed: int) -> Evaluation:
        """The collapse suite on the test split (and projector outputs, pairs); see the class docstring."""
        if len(features.test.x) < 2:
            raise SslbenchError(
                f"collapse: need at least 2 test rows, got {len(features.test.x)} (run {features.run or '?'})"
            )
        out: dict[str, float | str] = {"status": NOT_APPLICABLE}
        artifacts: dict[str, np.ndarray] = {}
        for layer, prefix in PREFIXES.items():
            rows = features.test.layer(layer)
            if rows is None:
                continue
            m, spectrum = collapse_metrics(subsample_rows(rows, self.max_samples, seed), self.uniformity_samples)
            pairs = features.pairs.layer(layer) if features.pairs is not None else None
            if pairs is not None:
                m["alignment"] = alignment(*pairs)
            views = features.views.layer(layer) if features.views is not None else None
            if views is not None:
                m["lidar"] = lidar(views)
            out.update({prefix + k: v for k, v in m.items()})
            artifacts[f"spectrum_{layer}"] = spectrum
        if features.test.z is not None:
            out["status"] = collapse_status(out["z_spread"], out["z_effective_dims"], out["z_uniformity"])
        return Evaluation(out, artifacts)
