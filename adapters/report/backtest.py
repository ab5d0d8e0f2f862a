"""The report of a backtest: ``trades.csv``, ``summary.json`` and three PNG plots.

- ``trades.csv``: one row per closed trade in close order (``closed_at``, then position id),
  with a header; times as epoch ms and ISO-8601 UTC; money, prices, quantities and R as exact
  decimal text (no exponent, no float rounding); an unknown value is an empty field.
- ``summary.json``: ``{"params": ..., "performance": ...}`` with sorted keys and an indent of
  2, so the same run gives a byte-identical file that diffs cleanly between runs. Parameters
  that JSON cannot hold as such are written as text (decimals exactly, paths, enums by value,
  dates in ISO form); NaN and infinity are refused.
- ``equity.png`` (equity on top, drawdown % below, shared UTC date axis),
  ``pnl_by_symbol.png`` (net PnL per symbol, green gains and red losses) and
  ``r_multiples.png`` (histogram of R). Every plot is drawn even without trades, with a
  notice in place of the empty chart.

Plots use matplotlib's object API (a ``Figure`` with an Agg canvas): no pyplot, no global
figure registry to leak into, safe from any thread. PNG metadata carries no software
version, so the same input gives byte-identical images. Each file is written to a temporary
name and renamed into place, so a reader never sees half a report file. A directory that
cannot be created or written to raises ``OSError`` (the caller turns it into an exit code).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from domain.performance import (
    ClosedTrade,
    EquityPoint,
    Performance,
    decimal_text,
    iso_utc,
    window_curve,
)

CSV_COLUMNS = (
    "position_id",
    "symbol",
    "side",
    "strategy",
    "opened_at",
    "opened_at_utc",
    "closed_at",
    "closed_at_utc",
    "qty",
    "entry_price",
    "exit_price",
    "fees",
    "funding",
    "realized_pnl",
    "r_multiple",
    "exit_reason",
)
GAIN, LOSS, LINE = "#2e7d32", "#c62828", "#1f4e79"
DPI = 100
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """Where :func:`write_report` put each file."""

    trades_csv: Path
    summary_json: Path
    equity_png: Path
    pnl_by_symbol_png: Path
    r_multiples_png: Path

    def all(self) -> tuple[Path, ...]:
        """Every file, in the order above."""
        return (
            self.trades_csv,
            self.summary_json,
            self.equity_png,
            self.pnl_by_symbol_png,
            self.r_multiples_png,
        )


def write_report(
    out_dir: Path,
    trades: Sequence[ClosedTrade],
    equity: Sequence[EquityPoint],
    perf: Performance,
    params: Mapping[str, Any],
) -> ReportFiles:
    """Write every report file into ``out_dir`` (created with its parents when missing).

    ``equity`` is the mark-to-market curve the performance was computed from; the plot shows
    it as :func:`domain.performance.performance` saw it (:func:`~domain.performance.window_curve`:
    the starting equity at the start of the window, then the samples inside it).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(
        trades_csv=out_dir / "trades.csv",
        summary_json=out_dir / "summary.json",
        equity_png=out_dir / "equity.png",
        pnl_by_symbol_png=out_dir / "pnl_by_symbol.png",
        r_multiples_png=out_dir / "r_multiples.png",
    )
    ordered = sorted(trades, key=lambda t: (t.closed_at, t.position_id))
    _write_atomic(files.trades_csv, trades_csv(ordered).encode())
    _write_atomic(files.summary_json, summary_json(perf, params).encode())
    _write_atomic(files.equity_png, _png(_equity_figure(equity, perf)))
    _write_atomic(files.pnl_by_symbol_png, _png(_pnl_by_symbol_figure(ordered)))
    _write_atomic(files.r_multiples_png, _png(_r_multiples_figure(ordered)))
    return files


def trades_csv(trades: Sequence[ClosedTrade]) -> str:
    """The CSV text of ``trades`` in the order given (``\\n`` line ends, UTF-8 safe)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for t in trades:
        writer.writerow(
            (
                t.position_id,
                t.symbol,
                t.side,
                t.strategy or "",
                t.opened_at,
                iso_utc(t.opened_at),
                t.closed_at,
                iso_utc(t.closed_at),
                decimal_text(t.qty),
                decimal_text(t.entry_price),
                decimal_text(t.exit_price) or "",
                decimal_text(t.fees),
                decimal_text(t.funding),
                decimal_text(t.realized_pnl),
                decimal_text(t.r_multiple) or "",
                t.exit_reason or "",
            )
        )
    return buffer.getvalue()


def summary_json(perf: Performance, params: Mapping[str, Any]) -> str:
    """The summary document: sorted keys, indent 2, a final newline."""
    document = {"params": dict(params), "performance": perf.to_dict()}
    text = json.dumps(document, sort_keys=True, indent=2, allow_nan=False, default=_json_value)
    return text + "\n"


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    raise TypeError(f"report parameter of type {type(value).__name__} is not JSON: {value!r}")


# ---- plots -----------------------------------------------------------------------------------


def _equity_figure(equity: Sequence[EquityPoint], perf: Performance) -> Figure:
    curve = window_curve(equity, perf.start_ms, perf.end_ms, perf.start_equity)
    times = [_utc(p.at) for p in curve]
    values = [float(p.equity) for p in curve]
    drawdown = []
    peak = values[0]
    for value in values:
        peak = max(peak, value)
        drawdown.append((value / peak - 1) * 100 if peak > 0 else 0.0)

    figure = _figure(10, 6)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    top.plot(times, values, color=LINE, linewidth=1.2, marker="o" if len(curve) == 1 else None)
    top.set_ylabel("equity")
    change = "" if perf.total_return is None else f" ({perf.total_return:+.2%})"
    top.set_title(f"Equity {_money(perf.start_equity)} -> {_money(perf.end_equity)}{change}")
    top.grid(visible=True, alpha=0.3)
    bottom.fill_between(times, drawdown, 0, color=LOSS, alpha=0.35, linewidth=0)
    bottom.plot(times, drawdown, color=LOSS, linewidth=0.8)
    bottom.set_ylabel("drawdown %")
    bottom.set_ylim(top=0)
    bottom.grid(visible=True, alpha=0.3)
    if perf.end_ms > perf.start_ms:
        bottom.set_xlim(_utc(perf.start_ms), _utc(perf.end_ms))
    locator = mdates.AutoDateLocator(tz=UTC)
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    bottom.set_xlabel("UTC")
    return figure


def _pnl_by_symbol_figure(trades: Sequence[ClosedTrade]) -> Figure:
    totals: dict[str, Decimal] = {}
    for t in trades:
        totals[t.symbol] = totals.get(t.symbol, Decimal(0)) + t.realized_pnl
    figure = _figure(max(6, 1 + 0.6 * len(totals)), 4.5)
    axes = figure.subplots()
    axes.set_title("Net PnL by symbol (after fees and funding)")
    if not totals:
        _notice(axes, "no trades")
        return figure
    symbols = sorted(totals)
    amounts = [float(totals[s]) for s in symbols]
    axes.bar(symbols, amounts, color=[GAIN if a >= 0 else LOSS for a in amounts])
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set_ylabel("PnL")
    axes.tick_params(axis="x", labelrotation=45 if len(symbols) > 6 else 0)
    axes.grid(visible=True, axis="y", alpha=0.3)
    return figure


def _r_multiples_figure(trades: Sequence[ClosedTrade]) -> Figure:
    rs = [float(t.r_multiple) for t in trades if t.r_multiple is not None]
    figure = _figure(7, 4.5)
    axes = figure.subplots()
    axes.set_title(f"R multiples ({len(rs)} of {len(trades)} trades)")
    if not rs:
        _notice(axes, "no trades" if not trades else "no trade has an R multiple")
        return figure
    bins = max(5, min(40, len(rs) // 2))
    axes.hist(rs, bins=bins, color=LINE, edgecolor="white")
    axes.axvline(0, color="black", linewidth=0.8)
    mean = sum(rs) / len(rs)
    axes.axvline(mean, color=GAIN if mean >= 0 else LOSS, linestyle="--", label=f"mean {mean:.2f}R")
    axes.legend()
    axes.set_xlabel("R")
    axes.set_ylabel("trades")
    return figure


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _notice(axes: Axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", fontsize=16, transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _utc(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


__all__ = ["ReportFiles", "summary_json", "trades_csv", "write_report"]
