"""Shared fixtures: the reference data folder (../shared/data) and a fixed thread count."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)  # on 2 shared cores, 2 torch threads ran 20x slower than 1

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's reference data sets; tests that need them skip when they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA} (../shared/data next to the repository)")
    return SHARED_DATA
