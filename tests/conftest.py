"""Shared fixtures: keep tests offline and single-threaded-deterministic."""

import os

import pytest

os.environ.setdefault("SSLBENCH_NO_DOWNLOAD", "1")


@pytest.fixture
def golden_pair():
    """REFERENCE.md's hand-checkable pair of (4, 3) embeddings, float64."""
    import torch

    za = torch.tensor([[1, 2, 3], [4, 0, -1], [0, 1, 0], [2, -2, 1]], dtype=torch.float64)
    zb = torch.tensor([[0, 1, 2], [3, 1, -1], [1, 0, 1], [2, -1, 0]], dtype=torch.float64)
    return za, zb
