"""The history report: closed trades of the last N days, overall and by UTC day, symbol and
strategy (``python run.py report``).

- The window is rolling: a trade is in it when ``now - days * 24h <= closed_at <= now``; the
  first day group is therefore usually partial. A report depends only on ``now_ms`` and the
  rows, so trades closed after ``now_ms`` never change a report as of ``now_ms``.
- Open trades (opened at or before ``now``, not closed by then) are only counted. Closed trades
  without a realised PnL cannot be scored; they are counted as ``incomplete`` and left out.
- Trades are grouped by the UTC day of ``closed_at`` (``YYYY-MM-DD``), by symbol, and by
  strategy; a trade without a strategy (an adopted one, say) is grouped under its origin.
- Every group is a :class:`~domain.metrics.TradeStats`; drawdowns are measured on the group's
  cumulative realised PnL in close order (``closed_at``, then id), starting at 0.
- Money is summed in Python, never in SQL (SQLite stores it as text, see
  :mod:`persistence.history.types`), so both backends give identical results. On PostgreSQL the
  report reads in one read-only ``REPEATABLE READ`` transaction, on SQLite in one ``BEGIN``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select
from sqlalchemy.engine import URL

from domain.metrics import Drawdown, TradeResult, TradeStats, summarize
from persistence.history.engine import make_engine
from persistence.history.models import Trade

DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Report:
    """Statistics of the trades closed in ``[since_ms, now_ms]`` (see the module docstring).

    Groups are in ascending key order: days oldest first, symbols and strategies by name.
    """

    now_ms: int
    days: int
    since_ms: int
    overall: TradeStats
    by_day: Mapping[str, TradeStats]
    by_symbol: Mapping[str, TradeStats]
    by_strategy: Mapping[str, TradeStats]
    open_trades: int = 0
    incomplete: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: money and R as decimal strings, ratios as floats, times as ms and ISO."""
        return {
            "window": {
                "days": self.days,
                "since": self.since_ms,
                "until": self.now_ms,
                "since_utc": utc_text(self.since_ms),
                "until_utc": utc_text(self.now_ms),
            },
            "open_trades": self.open_trades,
            "incomplete_trades": self.incomplete,
            "overall": stats_dict(self.overall),
            "by_day": {key: stats_dict(s) for key, s in self.by_day.items()},
            "by_symbol": {key: stats_dict(s) for key, s in self.by_symbol.items()},
            "by_strategy": {key: stats_dict(s) for key, s in self.by_strategy.items()},
        }


def build_report(engine_or_url: Engine | str | URL, now_ms: int, days: int) -> Report:
    """Read the trades of the last ``days`` days before ``now_ms`` and summarise them.

    Given a URL, opens (and disposes of) an engine of its own. Does not check the schema: the
    caller does that first (:func:`persistence.history.schema.check`).
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    since_ms = max(now_ms - days * DAY_MS, 0)
    if isinstance(engine_or_url, Engine):
        return _build(engine_or_url, now_ms, days, since_ms)
    engine = make_engine(engine_or_url)
    try:
        return _build(engine, now_ms, days, since_ms)
    finally:
        engine.dispose()


_COLUMNS = (
    Trade.symbol,
    Trade.strategy,
    Trade.origin,
    Trade.closed_at,
    Trade.realized_pnl,
    Trade.fees,
    Trade.funding,
    Trade.r_multiple,
)


def _build(engine: Engine, now_ms: int, days: int, since_ms: int) -> Report:
    closed = (
        select(*_COLUMNS)
        .where(Trade.closed_at.is_not(None), Trade.closed_at.between(since_ms, now_ms))
        .order_by(Trade.closed_at, Trade.id)
    )
    still_open = (
        select(func.count())
        .select_from(Trade)
        .where(
            and_(
                Trade.opened_at <= now_ms,
                or_(Trade.closed_at.is_(None), Trade.closed_at > now_ms),
            )
        )
    )
    with engine.connect() as connection, _snapshot(connection).begin():
        rows = connection.execute(closed).all()
        open_trades = int(connection.execute(still_open).scalar_one())

    by_day: dict[str, list[TradeResult]] = {}
    by_symbol: dict[str, list[TradeResult]] = {}
    by_strategy: dict[str, list[TradeResult]] = {}
    overall: list[TradeResult] = []
    incomplete = 0
    for row in rows:
        if row.realized_pnl is None:
            incomplete += 1
            continue
        result = TradeResult(row.realized_pnl, row.fees, row.funding, row.r_multiple)
        overall.append(result)
        by_day.setdefault(utc_day(row.closed_at), []).append(result)
        by_symbol.setdefault(row.symbol, []).append(result)
        by_strategy.setdefault(row.strategy or row.origin, []).append(result)
    return Report(
        now_ms=now_ms,
        days=days,
        since_ms=since_ms,
        overall=summarize(overall),
        by_day=_summarize_groups(by_day),
        by_symbol=_summarize_groups(by_symbol),
        by_strategy=_summarize_groups(by_strategy),
        open_trades=open_trades,
        incomplete=incomplete,
    )


def _snapshot(connection: Connection) -> Connection:
    """``connection`` set up so that every read of one report sees the same data."""
    if connection.dialect.name == "postgresql":
        return connection.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
    return connection  # SQLite: the engine's explicit BEGIN holds one read snapshot


def _summarize_groups(groups: Mapping[str, Iterable[TradeResult]]) -> dict[str, TradeStats]:
    return {key: summarize(groups[key]) for key in sorted(groups)}


def utc_day(ms: int) -> str:
    """The UTC calendar day (``YYYY-MM-DD``) of a time in ms since the epoch."""
    return (_EPOCH + timedelta(days=ms // DAY_MS)).date().isoformat()


def utc_text(ms: int) -> str:
    """A time in ms as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds)."""
    return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%SZ")


def decimal_text(value: Decimal | None) -> str | None:
    """An exact decimal as plain text without exponent or trailing zeros (``"12.5"``)."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def stats_dict(stats: TradeStats) -> dict[str, Any]:
    """One :class:`TradeStats` as JSON-safe values (money and R as decimal strings)."""
    return {
        "count": stats.count,
        "wins": stats.wins,
        "losses": stats.losses,
        "breakeven": stats.breakeven,
        "win_rate": stats.win_rate,
        "gross_profit": decimal_text(stats.gross_profit),
        "gross_loss": decimal_text(stats.gross_loss),
        "net_pnl": decimal_text(stats.net_pnl),
        "fees": decimal_text(stats.fees),
        "funding": decimal_text(stats.funding),
        "profit_factor": stats.profit_factor,
        "max_drawdown": drawdown_dict(stats.max_drawdown),
        "expectancy": decimal_text(stats.expectancy),
        "avg_r": decimal_text(stats.avg_r),
    }


def drawdown_dict(drawdown: Drawdown) -> dict[str, Any]:
    return {"amount": decimal_text(drawdown.amount), "fraction": drawdown.fraction}


# ---- the operator's table -------------------------------------------------------------------

_HEADER = ("trades", "win%", "pnl", "fees", "PF", "max DD")
_WIDTHS = (7, 7, 15, 12, 7, 24)


def render(report: Report, source: str | None = None) -> str:
    """The report as a readable table: per day, per symbol, per strategy, then the totals.

    PF is the profit factor (``inf``: wins and no loss; ``-``: neither); max DD is the deepest
    fall of the group's cumulative PnL, with the share of its peak when the peak was positive.
    """
    window = (
        f"last {report.days} day{'s' if report.days != 1 else ''}: "
        f"{utc_text(report.since_ms)} .. {utc_text(report.now_ms)}"
    )
    lines = [f"history report, {window}" + (f" ({source})" if source else "")]
    notes = [f"open trades: {report.open_trades}"]
    if report.incomplete:
        notes.append(f"{report.incomplete} closed trade(s) without realised PnL left out")
    if report.overall.count == 0:
        lines.append(f"no closed trades in the last {report.days} day(s)")
        return "\n".join([*lines, *notes])
    for title, groups in (
        ("by day (UTC)", report.by_day),
        ("by symbol", report.by_symbol),
        ("by strategy", report.by_strategy),
    ):
        lines += ["", *_table(title, groups)]
    lines += ["", *_table("total", {"all": report.overall}), "", *notes]
    return "\n".join(lines)


def _table(title: str, groups: Mapping[str, TradeStats]) -> list[str]:
    width = max([12, *(len(key) for key in groups)])
    head = f"  {title:<{width}}" + "".join(
        f" {h:>{w}}" for h, w in zip(_HEADER, _WIDTHS, strict=True)
    )
    rows = [head]
    for key, stats in groups.items():
        cells = (
            str(stats.count),
            _percent(stats.win_rate),
            money_text(stats.net_pnl),
            money_text(stats.fees),
            _factor(stats),
            _drawdown(stats.max_drawdown),
        )
        rows.append(
            f"  {key:<{width}}" + "".join(f" {c:>{w}}" for c, w in zip(cells, _WIDTHS, strict=True))
        )
    return rows


def money_text(value: Decimal) -> str:
    """Money for reading: two decimals, or up to eight when smaller amounts matter."""
    fine = value.quantize(Decimal("1e-8"), rounding=ROUND_HALF_EVEN)
    cents = fine.quantize(Decimal("0.01"))
    shown = cents if cents == fine else fine.normalize()
    text = format(shown, "f")
    return text[1:] if text.startswith("-") and Decimal(text) == 0 else text


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:.1f}%"


def _factor(stats: TradeStats) -> str:
    if stats.profit_factor is not None:
        return f"{stats.profit_factor:.2f}"
    return "inf" if stats.gross_profit > 0 else "-"


def _drawdown(drawdown: Drawdown) -> str:
    text = money_text(drawdown.amount)
    if drawdown.fraction is not None:
        text += f" ({drawdown.fraction * 100:.1f}%)"
    return text


__all__ = [
    "DAY_MS",
    "Report",
    "build_report",
    "decimal_text",
    "drawdown_dict",
    "money_text",
    "render",
    "stats_dict",
    "utc_day",
    "utc_text",
]
