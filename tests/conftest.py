"""Shared fixtures: seeds and small generated data sets (tests never need the real data)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same RNG state."""
    torch.manual_seed(1234)
    np.random.seed(1234)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded NumPy generator."""
    return np.random.default_rng(2024)
