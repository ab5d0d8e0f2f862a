"""Risk core: size or refuse each allocated signal against hard limits and the risk state.

Decisions:

- ``OpenApproved`` -> :func:`domain.risk.assess` with a :class:`RiskContext` built here:
  equity from the last ``AccountEquity``; open symbols, notional and margin from
  ``PositionChanged`` (terminal positions dropped) plus the intents sent but not yet reported
  by execution; used margin is the larger of the venue's figure and that estimate (``qty * cs *
  price / min(max_leverage, instrument.max_leverage)``), so a missing or lagging venue reading
  never makes room that is not there.
- Market data time for the signal's symbol: None while the feed reports it stale (``FeedStale``
  until ``FeedFresh``), which refuses with ``stale_data``; otherwise the newest of the signal's
  bar close (``created_at``) and any ``MarkPrice``/``CandleClosed`` seen for the symbol.
- Approved: ``PlaceIntent`` to execution and the symbol counts as open (pending) until execution
  reports it with a ``PositionChanged``, or ``pending_ttl_ms`` passes without a report.
  Refused: logged as ``risk_refused`` with ``reason=<code>`` and nothing is sent.
- ``TradeClosed`` -> :func:`record_trade` (daily PnL, loss streaks, cooldowns) at the last known
  equity; trades that arrive before any equity reading are kept and recorded with the first one.
- ``AccountEquity`` -> :func:`record_equity` (may latch the daily loss limit); ``Tick`` ->
  :func:`roll_day` (a new UTC day resets the daily figures and latch) and pending expiry;
  ``KillSwitchChanged`` latches or releases the kill switch. ``state`` is what to persist.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import structlog

from actors.allocator import leverage
from actors.core import EXECUTION, HISTORY, RISK, Outbox
from actors.messages import (
    AccountEquity,
    Audit,
    CandleClosed,
    FeedFresh,
    FeedStale,
    KillSwitchChanged,
    MarkPrice,
    OpenApproved,
    PlaceIntent,
    PositionChanged,
    PositionView,
    Tick,
    TradeClosed,
)
from domain.models import Instrument, OrderIntent
from domain.position_table import TERMINAL
from domain.risk import (
    ClosedTrade,
    RiskContext,
    RiskParams,
    RiskState,
    assess,
    intent_margin,
    latch_kill_switch,
    record_equity,
    record_trade,
    release_kill_switch,
    roll_day,
)
from domain.strategy.base import TIMEFRAME_MS
from persistence.history.models import EventKind

log = structlog.get_logger(__name__)

DEFAULT_PENDING_TTL_MS = 60_000


def _refusal(code: str, symbol: str, now: int, payload: dict[str, object]) -> tuple[str, Audit]:
    """A refused entry, for the audit trail."""
    return HISTORY, Audit(EventKind.RISK_DECISION, code, now, symbol, payload=payload)


class RiskCore:
    """The risk actor's logic (see the module docstring); destination ``risk``."""

    def __init__(
        self,
        params: RiskParams,
        instruments: Mapping[str, Instrument],
        state: RiskState | None = None,
        *,
        equity: Decimal | None = None,
        pending_ttl_ms: int = DEFAULT_PENDING_TTL_MS,
    ) -> None:
        self.name = RISK
        self.params = params
        self.instruments = dict(instruments)
        self.state = state or RiskState()
        self.equity = equity
        self.venue_used_margin: Decimal | None = None
        self.pending_ttl_ms = pending_ttl_ms
        self.positions: dict[str, PositionView] = {}
        self.pending: dict[str, tuple[OrderIntent, int]] = {}  # symbol -> (intent, sent at)
        self.stale: set[str] = set()
        self.data_ts: dict[str, int] = {}
        self._unrecorded: list[ClosedTrade] = []
        self._log = log.bind(actor=self.name)
        self._latch_reason = ""  # a daily-loss breach not yet sent to execution

    def handle(self, message: object, now: int) -> Outbox:
        """Update the context and state; answer ``OpenApproved`` with ``PlaceIntent`` or nothing."""
        if isinstance(message, OpenApproved):
            return self._on_open(message, now)
        if isinstance(message, PositionChanged):
            self._on_position(message.view)
        elif isinstance(message, TradeClosed):
            self._on_trade(
                ClosedTrade(message.symbol, message.pnl, message.closed_at), message.position_id
            )
        elif isinstance(message, AccountEquity):
            self._on_equity(message, now)
        elif isinstance(message, Tick):
            self._expire_pending(now)
            self._roll(now)
        elif isinstance(message, KillSwitchChanged):
            self.state = (
                latch_kill_switch(self.state)
                if message.latched
                else release_kill_switch(self.state)
            )
            self._log.warning("kill_switch_seen", latched=message.latched, reason=message.reason)
        elif isinstance(message, FeedStale):
            self.stale.add(message.symbol)
        elif isinstance(message, FeedFresh):
            self.stale.discard(message.symbol)
        elif isinstance(message, MarkPrice):
            self._saw_data(message.symbol, message.ts)
        elif isinstance(message, CandleClosed):
            tf_ms = TIMEFRAME_MS.get(message.timeframe, 0)
            self._saw_data(message.symbol, message.candle.open_time + tf_ms)
        return self._take_latch(now)

    def _take_latch(self, now: int) -> Outbox:
        """A daily-loss breach latches the kill switch: working entries and take-profits go,
        stops stay, and entries stay off until an operator resumes."""
        reason, self._latch_reason = self._latch_reason, ""
        if not reason:
            return []
        self._log.error("kill_switch_triggered", reason=reason)
        return [(EXECUTION, KillSwitchChanged(True, reason, now))]

    def context(self, symbol: str, signal_time: int, now: int) -> RiskContext:
        """The account and market as risk sees them for an entry on ``symbol``."""
        self._expire_pending(now)
        notional = Decimal(0)
        margin = Decimal(0)
        for view in self.positions.values():
            instrument = self.instruments.get(view.symbol)
            price = view.entry_price if view.entry_price is not None else view.stop_price
            if instrument is None or price is None:
                continue
            value = view.qty * instrument.contract_size * price
            notional += value
            margin += value / leverage(instrument, self.params)
        for intent, _ in self.pending.values():
            instrument = self.instruments[intent.symbol]
            price = intent.entry_price if intent.entry_price is not None else intent.stop_price
            notional += intent.qty * instrument.contract_size * price
            margin += intent_margin(intent, instrument, self.params)
        used = max(margin, self.venue_used_margin or Decimal(0))
        data_ts: int | None = None
        if symbol not in self.stale:
            data_ts = max(signal_time, self.data_ts.get(symbol, signal_time))
        return RiskContext(
            now_ms=now,
            equity=self.equity if self.equity is not None else Decimal(0),
            used_margin=used,
            open_symbols=frozenset(v.symbol for v in self.positions.values()) | set(self.pending),
            data_ts_ms=data_ts,
            open_notional=notional,
        )

    def _saw_data(self, symbol: str, ts: int) -> None:
        if ts > self.data_ts.get(symbol, ts - 1):
            self.data_ts[symbol] = ts

    def _on_open(self, message: OpenApproved, now: int) -> Outbox:
        signal = message.signal
        instrument = self.instruments.get(signal.symbol)
        if instrument is None:
            self._log.warning("risk_refused", symbol=signal.symbol, reason="unknown_instrument")
            return [_refusal("unknown_instrument", signal.symbol, now, {})]
        self._roll(now)
        ctx = self.context(signal.symbol, signal.created_at, now)
        decision = assess(signal, instrument, ctx, self.state, self.params)
        if decision.approved is None:
            self._log.info(
                "risk_refused",
                symbol=signal.symbol,
                reason=str(decision.refusal),
                detail=decision.detail,
                strategy=signal.strategy,
                score=signal.score,
            )
            detail = {"detail": decision.detail, "strategy": signal.strategy}
            return [_refusal(str(decision.refusal), signal.symbol, now, detail)]
        intent = decision.approved
        self.pending[signal.symbol] = (intent, now)
        self._log.info(
            "risk_approved",
            symbol=signal.symbol,
            side=intent.side.value,
            qty=str(intent.qty),
            detail=decision.detail,
            allocator=message.reasons,
        )
        return [(EXECUTION, PlaceIntent(intent))]

    def _on_position(self, view: PositionView) -> None:
        self.pending.pop(view.symbol, None)
        if view.state in TERMINAL:
            self.positions.pop(view.position_id, None)
        else:
            self.positions[view.position_id] = view

    def _on_trade(self, trade: ClosedTrade, position_id: str) -> None:
        if self.equity is None:
            self._unrecorded.append(trade)
            self._log.warning("trade_waiting_for_equity", symbol=trade.symbol, pnl=str(trade.pnl))
            return
        before = self.state
        self.state = record_trade(self.state, trade, self.equity, self.params)
        self._log.info(
            "trade_recorded",
            symbol=trade.symbol,
            position_id=position_id,
            pnl=str(trade.pnl),
            realized_today=str(self.state.realized_pnl),
            streak=self.state.streak(trade.symbol),
        )
        if self.state.daily_latched and not before.daily_latched:
            self._log.warning("daily_loss_latched", loss=str(-self.state.realized_pnl))
            self._latch_reason = "daily loss limit reached"
        if self.state.cooldown_until(trade.symbol) != before.cooldown_until(trade.symbol):
            self._log.warning(
                "cooldown_started",
                symbol=trade.symbol,
                until=self.state.cooldown_until(trade.symbol),
            )

    def _on_equity(self, message: AccountEquity, now: int) -> None:
        self.equity = message.equity
        if message.used_margin is not None:
            self.venue_used_margin = message.used_margin
        waiting, self._unrecorded = self._unrecorded, []
        for trade in waiting:
            self._on_trade(trade, "")
        latched = self.state.daily_latched
        self.state = record_equity(self.state, message.equity, now, self.params)
        if self.state.daily_latched and not latched:
            self._log.warning("daily_loss_latched", equity=str(message.equity))
            self._latch_reason = "daily loss limit reached"

    def _roll(self, now: int) -> None:
        if self.equity is None:
            return
        day = self.state.day
        self.state = roll_day(self.state, now, self.equity)
        if self.state.day != day:
            self._log.info("risk_day_started", day=self.state.day, equity=str(self.equity))

    def _expire_pending(self, now: int) -> None:
        for symbol, (_, at) in list(self.pending.items()):
            if now - at >= self.pending_ttl_ms:
                del self.pending[symbol]
                self._log.warning("pending_intent_expired", symbol=symbol, sent_at=at)
