"""Public loss functions; each a pure function of projector/predictor outputs."""

from baselines.losses.negative_cosine import negative_cosine, symmetric_negative_cosine
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
    "VICRegConfig",
    "correlation_term",
    "covariance_term",
    "invariance_term",
    "negative_cosine",
    "symmetric_negative_cosine",
    "variance_term",
    "vicreg_loss",
    "vicreg_terms",
]
