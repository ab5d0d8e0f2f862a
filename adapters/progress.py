"""A progress bar on stderr for long runs (a backtest over months of candles).

It draws one line in place (``\\r``), ``label [########............] 42% 12,345/29,000 ETA 0:12``,
at most every ``min_interval_s``, and on close a final line with the elapsed time and a newline.
It is on by default only when the stream is a terminal, so logs, pipes and CI output never
fill with carriage returns. The clock is injectable for tests.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

BAR_WIDTH = 20


class Progress:
    """Progress of ``total`` units of work, reported by absolute count with :meth:`update`.

    ``stream`` defaults to ``sys.stderr`` as it is when the bar is made. ``enabled=None``
    means "when the stream is a TTY". The ETA is the remaining work at the average rate since
    the bar was made; it shows ``--:--`` until something is done.
    """

    def __init__(
        self,
        total: int,
        label: str,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        min_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total < 0:
            raise ValueError(f"total must be at least 0, not {total}")
        self.total = total
        self.label = label
        self._stream = sys.stderr if stream is None else stream
        self.enabled = _is_tty(self._stream) if enabled is None else enabled
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._started = clock()
        self._done = 0
        self._last_render: float | None = None
        self._width = 0  # length of the line on screen, to blank a longer previous one
        self._closed = False

    @property
    def done(self) -> int:
        """The last count given to :meth:`update` (clamped to ``0..total``)."""
        return self._done

    def update(self, done: int) -> None:
        """Record that ``done`` units are finished; redraw if ``min_interval_s`` has passed
        since the last drawing (the first update always draws)."""
        self._done = min(max(done, 0), self.total)
        if not self.enabled or self._closed:
            return
        now = self._clock()
        if self._last_render is not None and now - self._last_render < self._min_interval_s:
            return
        self._last_render = now
        self._draw(f"ETA {self._eta(now)}", end="")

    def close(self) -> None:
        """Draw the final line (count reached and elapsed time) and end it; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            self._draw(f"in {_clock_text(self._clock() - self._started)}", end="\n")

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def render(self, tail: str) -> str:
        """The bar line for the current count, ending with ``tail`` (an ETA or elapsed time)."""
        done, total = (1, 1) if self.total == 0 else (self._done, self.total)
        filled = done * BAR_WIDTH // total  # integer arithmetic: 100% only when all is done
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        percent = done * 100 // total
        return f"{self.label} [{bar}] {percent}% {self._done:,}/{self.total:,} {tail}"

    def _eta(self, now: float) -> str:
        elapsed = now - self._started
        if self._done == 0 or elapsed <= 0:
            return "--:--"
        return _clock_text((self.total - self._done) * elapsed / self._done)

    def _draw(self, tail: str, *, end: str) -> None:
        line = self.render(tail)
        padding = " " * max(self._width - len(line), 0)
        self._width = len(line)
        self._stream.write(f"\r{line}{padding}{end}")
        self._stream.flush()


def _clock_text(seconds: float) -> str:
    """Whole seconds as ``M:SS``, or ``H:MM:SS`` from an hour up."""
    minutes, secs = divmod(max(int(seconds), 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


__all__ = ["Progress"]
