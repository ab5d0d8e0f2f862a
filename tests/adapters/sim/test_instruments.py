"""The simulator's contracts match the venue's real /instruments entries."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.sim.instruments import SimInstrument, default_instruments, unified_symbol

SAMPLES = Path("/work/shared/venue-samples/krakenfutures/markets/krakenfutures.json")

REQUIRED = {
    "PF_XBTUSD",
    "PF_ETHUSD",
    "PF_SOLUSD",
    "PF_XRPUSD",
    "PF_ADAUSD",
    "PF_DOGEUSD",
    "PF_LTCUSD",
    "PF_LINKUSD",
}


@pytest.fixture(scope="module")
def sample_infos() -> dict[str, dict]:
    if not SAMPLES.exists():
        pytest.skip("venue samples not available")
    markets = json.loads(SAMPLES.read_text())
    return {m["info"]["symbol"]: m for m in markets.values()}


def test_at_least_the_required_perpetuals() -> None:
    specs = default_instruments()
    assert set(specs) >= REQUIRED
    assert len(specs) >= 8


def test_specs_match_sample_info(sample_infos: dict[str, dict]) -> None:
    specs = default_instruments()
    checked = 0
    for symbol, spec in specs.items():
        market = sample_infos.get(symbol)
        assert spec.from_sample == (market is not None), symbol
        if market is None:
            continue
        info, inst = market["info"], spec.instrument
        assert inst.tick_size == Decimal(str(info["tickSize"]))
        assert inst.contract_size == Decimal(str(info["contractSize"]))
        assert inst.lot_size == Decimal(1).scaleb(-int(info["contractValueTradePrecision"]))
        assert inst.lot_size == Decimal(str(market["precision"]["amount"]))
        assert inst.min_size == inst.lot_size
        tier = info["marginLevels"][0]
        assert inst.max_leverage == 1 / Decimal(tier["initialMargin"])
        assert spec.maintenance_margin_rate == Decimal(tier["maintenanceMargin"])
        assert spec.max_position_size == Decimal(info["maxPositionSize"])
        assert inst.unified_symbol == market["symbol"]
        assert inst.base == market["base"]
        checked += 1
    assert checked >= 4


def test_start_prices_on_grid_and_positive() -> None:
    for spec in default_instruments().values():
        inst = spec.instrument
        assert spec.start_price > 0
        assert spec.start_price % inst.tick_size == 0
        assert inst.unified_symbol == unified_symbol(inst.symbol)
        assert inst.unified_symbol.endswith("/USD:USD")


def test_venue_info_follows_ccxt_rules_and_round_trips() -> None:
    for spec in default_instruments().values():
        info = spec.venue_info()
        assert (
            Decimal(1).scaleb(-int(info["contractValueTradePrecision"])) == spec.instrument.lot_size
        )
        assert Decimal(info["tickSize"]) == spec.instrument.tick_size
        assert info["symbol"] == info["symbol"].upper()
        assert SimInstrument.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert unified_symbol("PF_XBTUSD") == "BTC/USD:USD"
