"""Every port implementation runs the same suite: the ccxt adapter against the loopback
emulator, and the in-process adapter on the matching engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.adapters.conformance.ccxt_harness import make_ccxt_harness
from tests.adapters.conformance.harness import VenueHarness
from tests.adapters.conformance.inprocess_harness import make_inprocess_harness

IMPLEMENTATIONS: dict[str, Callable[[Path], VenueHarness]] = {
    "ccxt-emulator": make_ccxt_harness,
    "inprocess": make_inprocess_harness,
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def venue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VenueHarness]:
    harness = IMPLEMENTATIONS[request.param](tmp_path)
    try:
        yield harness
    finally:
        harness.close()
