"""What a trading run did, read back from its position store, and the market data it traded.

Both the paper service and the backtester write the same position store, so one reader gives
both sides of the parity comparison: for each position, its entry (symbol, side, limit price,
quantity, fills), the stops it placed (trigger price, quantity), and its exits (kind, price,
quantity, time). Fill times are the matching engine's own clock in both (the emulator's engine
and the backtest's are the same engine), so they are compared too; order creation times are
not (paper stamps them with the bot's extrapolated venue clock).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from adapters.sim.instruments import SimInstrument
from domain.models import Candle

MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class FillRecord:
    ts: int
    price: Decimal
    qty: Decimal


@dataclass(frozen=True, slots=True)
class ExitRecord:
    kind: str  # sl (stop), tp (take-profit), ex (exit order)
    ts: int
    price: Decimal
    qty: Decimal


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """One position as the store holds it; ``opened`` is its first entry fill (None: never)."""

    symbol: str
    side: str
    entry_price: Decimal  # the entry order's limit
    entry_qty: Decimal  # the entry order's quantity
    entry_fills: tuple[FillRecord, ...]
    stops: tuple[tuple[Decimal, Decimal], ...]  # (trigger price, qty) of each stop placed
    exits: tuple[ExitRecord, ...]
    state: str
    created_at: int  # the position's creation (paper: the bot's venue-clock estimate)

    @property
    def opened(self) -> int | None:
        return self.entry_fills[0].ts if self.entry_fills else None

    def until(self, cutoff: int) -> TradeRecord:
        """What of it had happened at the engine before ``cutoff`` (a session's end)."""
        fills = tuple(f for f in self.entry_fills if f.ts < cutoff)
        exits = tuple(e for e in self.exits if e.ts < cutoff)
        return TradeRecord(
            self.symbol,
            self.side,
            self.entry_price,
            self.entry_qty,
            fills,
            self.stops,
            exits,
            "?",  # a state is only comparable at the same moment; the fills say what happened
            0,
        )


def read_trades(store_path: Path) -> list[TradeRecord]:
    """Every position of a store, oldest first (by creation, then symbol)."""
    uri = f"file:{store_path}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        positions = db.execute(
            "SELECT id, symbol, state, record, created_at FROM positions "
            "ORDER BY created_at, symbol"
        ).fetchall()
        out = []
        for position_id, symbol, state, record, created_at in positions:
            orders = db.execute(
                "SELECT client_id, role, side, qty, price, trigger_price FROM orders "
                "WHERE position_id = ? ORDER BY created_at, client_id",
                (position_id,),
            ).fetchall()
            fills = db.execute(
                "SELECT role, ts, price, qty FROM fills WHERE position_id = ? "
                "ORDER BY ts, transition_seq, fill_id",
                (position_id,),
            ).fetchall()
            entry = next(o for o in orders if o[1] == "en")
            out.append(
                TradeRecord(
                    symbol=symbol,
                    side=_side(json.loads(record), entry[2]),
                    entry_price=Decimal(entry[4]),
                    entry_qty=Decimal(entry[3]),
                    entry_fills=tuple(
                        FillRecord(ts, Decimal(p), Decimal(q))
                        for role, ts, p, q in fills
                        if role == "en"
                    ),
                    stops=tuple((Decimal(o[5]), Decimal(o[3])) for o in orders if o[1] == "sl"),
                    exits=tuple(
                        ExitRecord(role, ts, Decimal(p), Decimal(q))
                        for role, ts, p, q in fills
                        if role != "en"
                    ),
                    state=state,
                    created_at=int(created_at),
                )
            )
    return out


def _side(record: Mapping[str, object], entry_side: str) -> str:
    side = record.get("side")
    if isinstance(side, str):
        return side
    return "long" if entry_side == "buy" else "short"


def read_feed_candles(history_db: Path, symbols: Sequence[str]) -> dict[str, list[Candle]]:
    """The 1m candles the paper feed delivered (REST warm-up and live), per unified symbol."""
    uri = f"file:{history_db}?mode=ro"
    out: dict[str, list[Candle]] = {}
    with sqlite3.connect(uri, uri=True) as db:
        for symbol in symbols:
            rows = db.execute(
                "SELECT time, open, high, low, close, volume FROM candles "
                "WHERE symbol = ? AND timeframe = '1m' ORDER BY time",
                (symbol,),
            ).fetchall()
            out[symbol] = [
                Candle(symbol, "1m", int(t), float(o), float(h), float(lo), float(c), float(v))
                for t, o, h, lo, c, v in rows
            ]
    return out


def venue_ids(instruments: Mapping[str, SimInstrument], unified: Sequence[str]) -> dict[str, str]:
    """Unified symbol -> venue symbol (``BTC/USD:USD`` -> ``PF_XBTUSD``)."""
    by_unified = {s.instrument.unified_symbol: venue for venue, s in instruments.items()}
    return {u: by_unified[u] for u in unified}


def emulator_facts(exchange_dir: Path) -> dict[str, object]:
    """From the emulator's saved state: its seed (generator and engine), first candle, candles
    played, the venue clock and the engine's clock."""
    state = json.loads((exchange_dir / "venue.json").read_text(encoding="utf-8"))
    engine, market = state["engine"], state["market"]
    return {
        "seed": int(engine["seed"]),
        "start_ms": int(market["start_ms"]),
        "played": int(market["played"]),
        "clock_ms": int(market["clock_ms"]),
        "engine_ms": int(engine["now"]),
    }


def describe(records: Sequence[TradeRecord]) -> str:
    """One line per position, for assertion messages."""
    lines = []
    for r in records:
        fills = ", ".join(f"{f.qty}@{f.price} t={f.ts}" for f in r.entry_fills)
        exits = ", ".join(f"{e.kind} {e.qty}@{e.price} t={e.ts}" for e in r.exits)
        stops = ", ".join(f"{q}@{p}" for p, q in r.stops)
        lines.append(
            f"{r.symbol} {r.side} limit {r.entry_qty}@{r.entry_price} fills [{fills}] "
            f"stops [{stops}] exits [{exits}]"
        )
    return "\n".join(lines)


def on_grid(candle: Candle, instrument: SimInstrument, symbol: str) -> Candle:
    """A generated candle as the engine walks it and the venue shows it: each price rounded to
    the tick (as :meth:`SimEngine._candle_path` does), high and low spanning open and close."""
    inst = instrument.instrument
    o, h, lo, c = (
        max(inst.round_price(v), inst.tick_size)
        for v in (candle.open, candle.high, candle.low, candle.close)
    )
    return Candle(
        symbol,
        candle.timeframe,
        candle.open_time,
        float(o),
        float(max(h, o, c)),
        float(min(lo, o, c)),
        float(c),
        candle.volume,
    )
