"""Public loss functions; each a pure function of projector/predictor outputs.

Golden values (float64, hand-checkable; sources in ``docs/reference/losses.md``) are checked in
``tests/test_losses.py``.
"""

from baselines.losses.barlow_twins import BarlowTwinsConfig, barlow_twins_loss, barlow_twins_terms, cross_correlation
from baselines.losses.negative_cosine import (
    BYOLConfig,
    SimSiamConfig,
    byol_loss,
    negative_cosine,
    symmetric_negative_cosine,
)
from baselines.losses.nt_xent import SimCLRConfig, nt_xent_loss
from baselines.losses.vicreg import (
    VICRegConfig,
    correlation_term,
    covariance_term,
    invariance_term,
    variance_term,
    vicreg_loss,
    vicreg_terms,
)

__all__ = [
    "BYOLConfig",
    "BarlowTwinsConfig",
    "SimCLRConfig",
    "SimSiamConfig",
    "byol_loss",
    "VICRegConfig",
    "barlow_twins_loss",
    "barlow_twins_terms",
    "correlation_term",
    "covariance_term",
    "cross_correlation",
    "invariance_term",
    "negative_cosine",
    "nt_xent_loss",
    "symmetric_negative_cosine",
    "variance_term",
    "vicreg_loss",
    "vicreg_terms",
]
