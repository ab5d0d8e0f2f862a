"""Instruments of the simulated Kraken Futures venue.

The perpetuals below copy the venue's ``/instruments`` entries (``venue-samples/krakenfutures/
markets/krakenfutures.json``) where the sample file has them (PF_XBTUSD, PF_ETHUSD, PF_LTCUSD,
PF_DOGEUSD, PF_PEPEUSD). The others (SOL, XRP, ADA, LINK) are not in the sample; their grids are
set to the venue's usual values for those contracts and are marked ``from_sample=False``.

Rules, as ccxt applies them to the venue's entries (MAPPING.md):

- ``tick_size`` = ``tickSize``; the lot (quantity step) = ``10 ** -contractValueTradePrecision``;
- the venue publishes no separate minimum size, so ``min_size`` equals one lot;
- ``max_leverage`` = ``1 / initialMargin`` of the first ``marginLevels`` tier, and the maintenance
  margin rate is that tier's ``maintenanceMargin``;
- unified symbol ``BASE/USD:USD`` with ``XBT`` mapped to ``BTC``.

``start_price`` is a realistic opening price on the tick grid for the simulator's first tick.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from domain.models import Instrument

_COMMON_CODES = {"XBT": "BTC"}


@dataclass(frozen=True, slots=True)
class SimInstrument:
    """A simulated perpetual: the domain instrument plus what the venue and simulator add."""

    instrument: Instrument
    start_price: Decimal
    maintenance_margin_rate: Decimal
    max_position_size: Decimal
    beta: float = 1.0
    daily_volume: Decimal = Decimal(0)  # typical 24h volume in contracts (market data generator)
    from_sample: bool = True
    category: str = "Layer 1"

    @property
    def symbol(self) -> str:
        return self.instrument.symbol

    @property
    def initial_margin_rate(self) -> Decimal:
        return Decimal(1) / self.instrument.max_leverage

    def venue_info(self) -> dict[str, Any]:
        """The venue's ``/instruments`` entry for this contract (strings, as in the samples)."""
        inst = self.instrument
        lot_exponent = inst.lot_size.normalize().as_tuple().exponent
        assert isinstance(lot_exponent, int)
        return {
            "symbol": inst.symbol,
            "type": "flexible_futures",
            "tickSize": str(inst.tick_size),
            "contractSize": str(inst.contract_size),
            "tradeable": True,
            "impactMidSize": str(inst.lot_size),
            "maxPositionSize": str(self.max_position_size),
            "openingDate": "2022-03-22T13:15:36.000Z",
            "marginLevels": [
                {
                    "numNonContractUnits": "0",
                    "initialMargin": str(self.initial_margin_rate),
                    "maintenanceMargin": str(self.maintenance_margin_rate),
                }
            ],
            "fundingRateCoefficient": "24",
            "maxRelativeFundingRate": "0.0025",
            "contractValueTradePrecision": str(-lot_exponent),
            "postOnly": False,
            "retailMarginLevels": [],
            "category": self.category,
            "tags": [],
        }

    def to_dict(self) -> dict[str, Any]:
        inst = self.instrument
        return {
            "symbol": inst.symbol,
            "base": inst.base,
            "quote": inst.quote,
            "tick_size": str(inst.tick_size),
            "lot_size": str(inst.lot_size),
            "min_size": str(inst.min_size),
            "contract_size": str(inst.contract_size),
            "max_leverage": str(inst.max_leverage),
            "unified_symbol": inst.unified_symbol,
            "start_price": str(self.start_price),
            "maintenance_margin_rate": str(self.maintenance_margin_rate),
            "max_position_size": str(self.max_position_size),
            "beta": self.beta,
            "daily_volume": str(self.daily_volume),
            "from_sample": self.from_sample,
            "category": self.category,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimInstrument:
        inst = Instrument(
            symbol=data["symbol"],
            base=data["base"],
            quote=data["quote"],
            tick_size=Decimal(data["tick_size"]),
            lot_size=Decimal(data["lot_size"]),
            min_size=Decimal(data["min_size"]),
            contract_size=Decimal(data["contract_size"]),
            max_leverage=Decimal(data["max_leverage"]),
            unified_symbol=data["unified_symbol"],
        )
        return cls(
            instrument=inst,
            start_price=Decimal(data["start_price"]),
            maintenance_margin_rate=Decimal(data["maintenance_margin_rate"]),
            max_position_size=Decimal(data["max_position_size"]),
            beta=float(data["beta"]),
            daily_volume=Decimal(data["daily_volume"]),
            from_sample=bool(data["from_sample"]),
            category=str(data["category"]),
        )


def unified_symbol(venue_symbol: str) -> str:
    """``PF_XBTUSD`` -> ``BTC/USD:USD`` (linear perpetual, USD settled)."""
    middle = venue_symbol.split("_")[1]
    base = middle[:-3]
    return f"{_COMMON_CODES.get(base, base)}/USD:USD"


def _leverage(initial_margin: str) -> Decimal:
    """``1 / initialMargin``, written as a plain integer when it is one (50, not 5E+1)."""
    value = Decimal(1) / Decimal(initial_margin)
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value


def _perp(
    venue_symbol: str,
    *,
    tick: str,
    precision: int,
    initial_margin: str,
    maintenance_margin: str,
    max_position: str,
    start: str,
    beta: float,
    daily_volume: str,
    from_sample: bool,
    category: str = "Layer 1",
) -> SimInstrument:
    lot = Decimal(10) ** -precision  # 4 -> 0.0001, -3 -> 1000 (not 1E+3)
    base_id = venue_symbol.split("_")[1][:-3]
    inst = Instrument(
        symbol=venue_symbol,
        base=_COMMON_CODES.get(base_id, base_id),
        quote="USD",
        tick_size=Decimal(tick),
        lot_size=lot,
        min_size=lot,
        contract_size=Decimal(1),
        max_leverage=_leverage(initial_margin),
        unified_symbol=unified_symbol(venue_symbol),
    )
    return SimInstrument(
        instrument=inst,
        start_price=inst.round_price(start),
        maintenance_margin_rate=Decimal(maintenance_margin),
        max_position_size=Decimal(max_position),
        beta=beta,
        daily_volume=Decimal(daily_volume),
        from_sample=from_sample,
        category=category,
    )


def default_instruments() -> dict[str, SimInstrument]:
    """The simulator's contracts keyed by venue symbol, in a fixed order."""
    specs = [
        # In markets/krakenfutures.json: grid, margin tiers and max position copied from `info`.
        _perp(
            "PF_XBTUSD",
            tick="1",
            precision=4,
            initial_margin="0.02",
            maintenance_margin="0.01",
            max_position="1200",
            start="95000",
            beta=1.0,
            daily_volume="2500",
            from_sample=True,
        ),
        _perp(
            "PF_ETHUSD",
            tick="0.1",
            precision=3,
            initial_margin="0.02",
            maintenance_margin="0.01",
            max_position="16000",
            start="3300",
            beta=1.15,
            daily_volume="40000",
            from_sample=True,
        ),
        _perp(
            "PF_LTCUSD",
            tick="0.01",
            precision=2,
            initial_margin="0.02",
            maintenance_margin="0.01",
            max_position="200000",
            start="100",
            beta=1.1,
            daily_volume="150000",
            from_sample=True,
            category="Payment",
        ),
        _perp(
            "PF_DOGEUSD",
            tick="0.000001",
            precision=0,
            initial_margin="0.02",
            maintenance_margin="0.01",
            max_position="150000000",
            start="0.32",
            beta=1.4,
            daily_volume="60000000",
            from_sample=True,
            category="Meme",
        ),
        _perp(
            "PF_PEPEUSD",
            tick="0.0000000001",
            precision=-3,
            initial_margin="0.05",
            maintenance_margin="0.025",
            max_position="1000000000000",
            start="0.000018",
            beta=1.6,
            daily_volume="900000000000",
            from_sample=True,
            category="Meme",
        ),
        # Not in the sample file: the venue's usual grid for these contracts.
        _perp(
            "PF_SOLUSD",
            tick="0.01",
            precision=2,
            initial_margin="0.02",
            maintenance_margin="0.01",
            max_position="200000",
            start="180",
            beta=1.3,
            daily_volume="300000",
            from_sample=False,
        ),
        _perp(
            "PF_XRPUSD",
            tick="0.0001",
            precision=0,
            initial_margin="0.02",
            maintenance_margin="0.01",
            max_position="20000000",
            start="2.2",
            beta=1.2,
            daily_volume="30000000",
            from_sample=False,
            category="Payment",
        ),
        _perp(
            "PF_ADAUSD",
            tick="0.000001",
            precision=0,
            initial_margin="0.02",
            maintenance_margin="0.01",
            max_position="20000000",
            start="0.9",
            beta=1.3,
            daily_volume="25000000",
            from_sample=False,
        ),
        _perp(
            "PF_LINKUSD",
            tick="0.001",
            precision=1,
            initial_margin="0.02",
            maintenance_margin="0.01",
            max_position="1000000",
            start="20",
            beta=1.25,
            daily_volume="900000",
            from_sample=False,
            category="Oracle",
        ),
    ]
    return {spec.symbol: spec for spec in specs}


def by_symbol(instruments: Iterable[SimInstrument]) -> dict[str, SimInstrument]:
    return {spec.symbol: spec for spec in instruments}
