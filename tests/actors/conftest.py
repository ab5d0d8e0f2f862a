"""Fixtures the execution, reconciliation and control tests share: the in-process venue with
BTC at 50,000 and an empty position store."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from persistence.store import PositionStore
from tests.adapters.conformance.harness import BTC
from tests.adapters.conformance.inprocess_harness import InProcessHarness


@pytest.fixture
def venue() -> InProcessHarness:
    harness = InProcessHarness()
    harness.set_price(BTC, Decimal(50_000))
    return harness


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PositionStore]:
    with PositionStore.open(tmp_path / "positions.db") as s:
        yield s
