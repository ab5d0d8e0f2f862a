"""Shared fixtures: an engine with no slippage so prices can be checked by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapters.sim.config import EngineConfig
from adapters.sim.engine import SimEngine

BTC = "PF_XBTUSD"
ETH = "PF_ETHUSD"
T0 = 1_735_689_600_000


def make_engine(
    *,
    balance: str = "100000",
    seed: int = 1,
    slippage: str = "0",
    impact: str = "0",
    participation: Decimal | None = None,
    liquidation: bool = True,
) -> SimEngine:
    config = EngineConfig(
        slippage_bps=Decimal(slippage),
        impact_bps_per_million=Decimal(impact),
        participation=participation,
        liquidation=liquidation,
    )
    engine = SimEngine(config=config, seed=seed, start_ts=T0)
    engine.create_account("acc", balance)
    engine.set_price(BTC, 50000, ts=T0)
    engine.set_price(ETH, 3000, ts=T0)
    return engine


@pytest.fixture
def engine() -> SimEngine:
    return make_engine()
