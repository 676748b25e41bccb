"""Shared test setup: the exporter package on sys.path, and the repo's golden fixture paths."""

import sys
from pathlib import Path

import pytest
import torch

EXPORTER = Path(__file__).resolve().parents[1]
REPO = EXPORTER.parent
TINY_A = REPO / "test" / "fixtures" / "tiny-a"

if str(EXPORTER) not in sys.path:
    sys.path.insert(0, str(EXPORTER))

# tiny models: one thread is as fast, and far faster when the machine is busy
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_a() -> Path:
    """test/fixtures/tiny-a (release/ and expected/)."""
    return TINY_A
