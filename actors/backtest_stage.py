"""The analyzers' half of a replay: each bar's closed candles to the analyzer cores.

Analyzers take nothing but candles (``CandleClosed``; ``FeedStale``/``FeedFresh`` never occur in a
replay) and send nothing but signals to the allocator, so what they answer at a bar is a
function of the candles up to that bar, whatever the rest of the pipeline did. A replay may
therefore run them ahead of the trading half:

- :class:`CandleStage` builds the messages the live feed would deliver at a bar's close (longer
  timeframes first, aggregated from the base bars as the feed aggregates 1m; then the base
  candles, in symbol order) and hands them to the analyzer cores; the replay dispatches what
  they answered, in that order, exactly as the breadth-first dispatcher would have.
- :class:`AheadStage` runs a :class:`CandleStage` over every bar in a worker process (forked, so
  it starts from the very cores and candles the replay built) and streams the answers back; the
  replay, on the other core, trades bar ``i`` while the worker analyses bar ``i + k``. Same
  handler code, same messages, same order: the trades are identical to the in-process stage's.

The worker is a dispatch choice, not a second strategy: a failure in it ends the replay with
its traceback (:class:`StageFailed`), never with missing signals.
"""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.connection
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from actors.core import Core, Outbox, analyzer
from actors.messages import CandleClosed
from adapters.marketdata.candles import TimeframeAggregator
from domain.models import Candle

CHUNK_BARS = 512  # bars the worker analyses between two reports
_POLL_S = 1.0  # how often a replay waiting for the worker checks that it still runs
GC_EVERY_BARS = 16_384  # a paced collection's period (about 57 days of 5m bars)
_ERROR = "error"


class PacedCollector:
    """The cyclic garbage collector paced for a replay (``with``; :meth:`bar` at every bar).

    A replay allocates briskly and keeps little, and what it keeps (bars, events, journal
    rows) lives long: automatic collections, triggered by allocation counts, kept walking the
    same survivors (about 6% of a year's replay). Inside the block automatic collection is
    off; what exists when it starts (the candles, the cores) is frozen, so no collection walks
    it; every ``every`` bars one collection frees the cycles made since the last, and freezes
    what survived. On leaving, everything is unfrozen (unless something was frozen before the
    block) and collection is as it was: cycles made of frozen objects are freed then.
    """

    def __init__(self, every: int = GC_EVERY_BARS) -> None:
        self.every = every
        self._was_enabled = True
        self._was_frozen = False

    def __enter__(self) -> PacedCollector:
        self._was_enabled = gc.isenabled()
        self._was_frozen = gc.get_freeze_count() > 0  # someone froze before: leave it frozen
        gc.disable()
        gc.freeze()
        return self

    def bar(self, index: int) -> None:
        if index % self.every == self.every - 1:
            gc.collect()
            gc.freeze()

    def __exit__(self, *exc: object) -> None:
        if not self._was_frozen:
            gc.unfreeze()
        if self._was_enabled:
            gc.enable()


class StageFailed(RuntimeError):
    """The analyzers' worker failed or vanished; the message carries what it said."""


class CandleStage:
    """One bar's closed candles, as the feed would deliver them, through the analyzer cores."""

    def __init__(
        self,
        cores: Mapping[str, Core],
        unified: Mapping[str, str],
        timeframe: str,
        higher: Sequence[str],
    ) -> None:
        """``unified``: venue id -> unified symbol; ``timeframe``: the walked bars';
        ``higher``: longer timeframes to aggregate, longest first."""
        self.unified = dict(unified)
        self.timeframe = timeframe
        self.higher = tuple(higher)
        self._cores = {analyzer(u): cores[analyzer(u)] for u in self.unified.values()}
        self._aggregators = {
            venue: [TimeframeAggregator(u, tf) for tf in self.higher]
            for venue, u in self.unified.items()
        }

    def messages(self, group: Sequence[Candle], close: int, live: bool) -> Outbox:
        """What the analyzers receive when the bar of ``group`` (venue candles) closes."""
        source = "live" if live else "rest"
        out: Outbox = []
        for candle in group:
            unified = self.unified[candle.symbol]
            name = analyzer(unified)
            for aggregator in self._aggregators[candle.symbol]:
                for bar, _ in aggregator.add_closed(candle, close):
                    out.append((name, CandleClosed(unified, aggregator.timeframe, bar, source)))
            base = Candle(
                unified,
                candle.timeframe,
                candle.open_time,
                candle.open,
                candle.high,
                candle.low,
                candle.close,
                candle.volume,
            )
            out.append((name, CandleClosed(unified, self.timeframe, base, source)))
        return out

    def outbox(
        self,
        group: Sequence[Candle],
        close: int,
        live: bool,
        seen: Callable[[str, object], None] | None = None,
    ) -> Outbox:
        """Hand the bar's candles to the analyzers; what they answered, in delivery order."""
        out: Outbox = []
        cores = self._cores
        for destination, message in self.messages(group, close, live):
            if seen is not None:
                seen(destination, message)
            answer = cores[destination].handle(message, close)
            if answer:
                out.extend(answer)
        return out


class AheadStage:
    """A :class:`CandleStage` over ``bars`` in a forked worker process (module docstring).

    ``bars`` are ``(group, close, live)`` in replay order; :meth:`outbox` answers bar ``i``'s
    analyzer output, waiting for the worker when it has not got there yet. :meth:`close` stops
    the worker (a replay that ends early does not wait for it).
    """

    def __init__(
        self, stage: CandleStage, bars: Sequence[tuple[Sequence[Candle], int, bool]]
    ) -> None:
        context = multiprocessing.get_context("fork")
        receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_work, args=(stage, bars, sender), name="bastion-analyzers", daemon=True
        )
        self._process.start()
        sender.close()
        self._conn: multiprocessing.connection.Connection = receiver
        self._answers: dict[int, Outbox] = {}
        self._through = -1  # every bar up to this index has been analysed

    def outbox(self, index: int) -> Outbox:
        while index > self._through:
            self._receive()
        return self._answers.pop(index, [])

    def _receive(self) -> None:
        try:
            while not self._conn.poll(_POLL_S):
                if not self._process.is_alive() and not self._conn.poll(0):
                    raise EOFError
            report: Any = self._conn.recv()
        except (EOFError, OSError) as err:
            self._process.join(timeout=5)
            code = self._process.exitcode
            raise StageFailed(
                f"the analyzers' worker ended without an answer (exit {code}): {err!r}"
            ) from None
        if report[0] == _ERROR:
            raise StageFailed(f"the analyzers' worker failed:\n{report[1]}")
        through, answers = report
        self._answers.update(answers)
        self._through = through

    def close(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._conn.close()


def _work(
    stage: CandleStage,
    bars: Sequence[tuple[Sequence[Candle], int, bool]],
    conn: multiprocessing.connection.Connection,
) -> None:
    """The worker: analyse every bar, report every ``CHUNK_BARS`` bars (and at the end)."""
    try:
        answers: dict[int, Outbox] = {}
        collector = PacedCollector()  # forked inside the replay's: collection is paced here too
        for index, (group, close, live) in enumerate(bars):
            collector.bar(index)
            out = stage.outbox(group, close, live)
            if out:
                answers[index] = out
            if index % CHUNK_BARS == CHUNK_BARS - 1:
                conn.send((index, answers))
                answers = {}
        conn.send((len(bars) - 1, answers))
    except BaseException:
        conn.send((_ERROR, traceback.format_exc()))
    finally:
        conn.close()


__all__ = ["AheadStage", "CandleStage", "PacedCollector", "StageFailed"]
