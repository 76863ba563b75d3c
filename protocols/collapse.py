"""Label-free collapse readings of frozen features: RankMe and std of l2-normalised rows.

Two complementary views (see :mod:`sslbench.embedding_stats`): RankMe
(Garrido et al. 2023) sees dimensional collapse in the spectrum of the
uncentred features; the std of l2-normalised features (Chen & He 2021) is
scale-aware and reads 0 for complete collapse against a healthy
``1/sqrt(D)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from sslbench.embedding_stats import is_completely_collapsed, rankme, std_of_l2_normalized
from sslbench.errors import SslbenchError
from sslbench.protocol import Protocol, check_features
from sslbench.types import Direction, FeatureSet


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


def collapse_metrics(z: np.ndarray) -> dict[str, float]:
    """RankMe, std of l2-normalised rows and its healthy reference for ``z``.

    Args:
        z: ``(N, D)`` features, ``N >= 2``.

    Returns:
        ``{"rankme", "std_l2", "std_l2_ref", "dim"}``; ``std_l2_ref = 1/sqrt(D)``.
    """
    d = z.shape[1]
    return {
        "rankme": rankme(z),
        "std_l2": float(std_of_l2_normalized(torch.from_numpy(np.asarray(z, dtype=np.float64)))),
        "std_l2_ref": 1.0 / float(np.sqrt(d)),
        "dim": float(d),
    }


#: RankMe below this fraction of D (with a healthy std_l2): dimensional collapse.
DIMENSIONAL_RANKME_FRACTION = 0.1


def collapse_status(m: dict[str, float]) -> str:
    """``complete``, ``dimensional`` or ``healthy`` from :func:`collapse_metrics` readings.

    Complete collapse (every input to about one point) drives the scale-aware
    ``std_l2`` to 0 (below 10% of ``1/sqrt(D)``); dimensional collapse keeps ``std_l2``
    near ``1/sqrt(D)`` but leaves RankMe far below D (REFERENCE.md: a rank-16
    Z reads std_l2 0.087 but RankMe 15.8), so both readings are needed.
    """
    if is_completely_collapsed(m["std_l2"], int(m["dim"])):
        return "complete"
    if m["rankme"] < DIMENSIONAL_RANKME_FRACTION * m["dim"]:
        return "dimensional"
    return "healthy"


STATUS_CODES = {"healthy": 0.0, "dimensional": 1.0, "complete": 2.0}


@dataclass
class Collapse(Protocol):
    """RankMe and std of l2-normalised embeddings on a seeded subsample of the test split.

    Reads the backbone features (``rankme``, ``std_l2``, ``std_l2_ref``, ``dim``)
    and, when the features carry projector outputs (``extra["test_z"]``), the same
    readings prefixed ``z_``. ``status_code`` is 0 healthy, 1 dimensional, 2
    complete and ``status`` the same as a word (:func:`collapse_status`), judged on
    the projector outputs, where the loss acts. Encoders without a projector
    (the floors, external encoders) get ``status`` ``"n/a"`` and no code:
    post-ReLU backbone features all lie in the positive orthant, so their
    uncentred ``std_l2`` is small even when healthy (a random ConvNet at 84.9%
    linear reads 0.005 against 1/sqrt(256) = 0.0625) and a threshold on it
    would misfire. The ``z_*`` readings and the status only appear when there
    are projector outputs.

    Attributes:
        max_samples: Most test rows used (subsampled with the seed).
    """

    name: ClassVar[str] = "collapse"
    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset()
    metrics: ClassVar[dict[str, Direction]] = {
        "rankme": "higher",
        "std_l2": "higher",
        "z_rankme": "higher",
        "z_std_l2": "higher",
        "status_code": "lower",
    }
    main_metric: ClassVar[str] = "rankme"

    max_samples: int = 10000

    def __post_init__(self) -> None:
        if self.max_samples < 2:
            raise SslbenchError(f"collapse: max_samples must be >= 2, got {self.max_samples}")

    def evaluate(self, features: FeatureSet, seed: int) -> dict[str, float | str]:
        """Collapse readings of ``features.test_x`` (and ``extra["test_z"]``); labels unused."""
        check_features(features)
        if len(features.test_x) < 2:
            raise SslbenchError(
                f"collapse: need at least 2 test rows, got {len(features.test_x)} "
                f"(run {features.run or '?'})"
            )
        out: dict[str, float | str] = dict(collapse_metrics(subsample_rows(features.test_x, self.max_samples, seed)))
        out["status"] = "n/a"
        if "test_z" in features.extra:
            z = collapse_metrics(subsample_rows(features.extra["test_z"], self.max_samples, seed))
            out.update({f"z_{k}": v for k, v in z.items()})
            out["status"] = collapse_status(z)
            out["status_code"] = STATUS_CODES[out["status"]]
        return out
