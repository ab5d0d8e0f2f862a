"""A small thread-safe Prometheus metrics registry and Bastion's own metrics.

No client library: counters, gauges and fixed-bucket histograms, each with optional labels, and
:meth:`Registry.render` in the Prometheus text exposition format 0.0.4. Decisions:

- Label sets are checked on every update (exactly the declared names), so a typo raises at the
  call site instead of silently creating a new series.
- A metric without labels is rendered from the start (``0``), so a scrape shows it before the
  first update; a labelled metric shows a series once that label set has been used (or
  pre-created with :meth:`_Metric.touch`).
- Each metric has its own lock; :meth:`Registry.render` snapshots one metric at a time, so a
  histogram's buckets, ``_sum`` and ``_count`` are always consistent with each other.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar

from domain.position_table import TERMINAL, State

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LabelKey = tuple[str, ...]


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: integers without ``.0``, ``+Inf``, ``NaN``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def escape_label_value(value: str) -> str:
    """Escape backslash, double quote and line feed, as the text format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(
        f'{name}="{escape_label_value(value)}"' for name, value in zip(names, values, strict=True)
    )
    return "{" + pairs + "}"


class _Metric:
    """Common part: name, help, label names, one lock, label validation and the header."""

    kind: ClassVar[str] = "untyped"
    reserved_labels: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labels:
            if not _LABEL_RE.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} for {name}")
            if label in self.reserved_labels:
                raise ValueError(f"label name {label!r} is reserved for a {self.kind}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate label names for {name}: {labels}")
        self.name = name
        self.help = help_text
        self.label_names: tuple[str, ...] = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: Mapping[str, object]) -> LabelKey:
        if set(labels) != set(self.label_names):
            raise ValueError(
                f"{self.name} takes labels {sorted(self.label_names)}, got {sorted(labels)}"
            )
        return tuple(str(labels[name]) for name in self.label_names)

    def _header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def touch(self, **labels: object) -> None:
        """Create the series for this label set (at zero) so scrapes show it before any update."""
        raise NotImplementedError

    def render_lines(self) -> list[str]:
        raise NotImplementedError


class _Scalar(_Metric):
    """One float per label set (counter or gauge)."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelKey, float] = {} if labels else {(): 0.0}

    def touch(self, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._values.setdefault(key, 0.0)

    def value(self, **labels: object) -> float:
        """The current value for this label set (0 if never updated)."""
        key = self._key(labels)
        with self._lock:
            return self._values.get(key, 0.0)

    def _add(self, amount: float, labels: Mapping[str, object]) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def render_lines(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        lines = self._header()
        for key, value in items:
            lines.append(f"{self.name}{_labels_text(self.label_names, key)} {format_value(value)}")
        return lines


class Counter(_Scalar):
    """A value that only goes up (restarts reset it to zero, as Prometheus expects)."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        if amount < 0 or math.isnan(amount):
            raise ValueError(f"{self.name}: a counter cannot decrease (inc by {amount})")
        self._add(amount, labels)


class Gauge(_Scalar):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        self._add(amount, labels)

    def dec(self, amount: float = 1.0, **labels: object) -> None:
        self._add(-amount, labels)


class _HistogramSeries:
    __slots__ = ("count", "counts", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets  # per bucket, not cumulative; the last one is +Inf
        self.sum = 0.0
        self.count = 0


class Histogram(_Metric):
    """Observations counted in fixed buckets (upper bounds, ``+Inf`` added), plus sum and count."""

    kind = "histogram"
    reserved_labels = frozenset({"le"})

    def __init__(
        self, name: str, help_text: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> None:
        super().__init__(name, help_text, labels)
        bounds = [float(b) for b in buckets if not math.isinf(b)]
        if not bounds or any(b >= c for b, c in itertools.pairwise(bounds)):
            raise ValueError(f"{name}: buckets must be non-empty and strictly increasing")
        self.buckets: tuple[float, ...] = (*bounds, math.inf)
        self._series: dict[LabelKey, _HistogramSeries] = (
            {} if labels else {(): _HistogramSeries(len(self.buckets))}
        )

    def touch(self, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._series.setdefault(key, _HistogramSeries(len(self.buckets)))

    def observe(self, value: float, **labels: object) -> None:
        if math.isnan(value):
            raise ValueError(f"{self.name}: cannot observe NaN")
        key = self._key(labels)
        index = next(i for i, bound in enumerate(self.buckets) if value <= bound)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _HistogramSeries(len(self.buckets))
            series.counts[index] += 1
            series.sum += value
            series.count += 1

    def count(self, **labels: object) -> int:
        key = self._key(labels)
        with self._lock:
            series = self._series.get(key)
            return series.count if series else 0

    def render_lines(self) -> list[str]:
        with self._lock:
            snapshot = [
                (key, list(s.counts), s.sum, s.count) for key, s in sorted(self._series.items())
            ]
        lines = self._header()
        bucket_labels = (*self.label_names, "le")
        for key, counts, total, count in snapshot:
            cumulative = 0
            for bound, n in zip(self.buckets, counts, strict=True):
                cumulative += n
                labels = _labels_text(bucket_labels, (*key, format_value(bound)))
                lines.append(f"{self.name}_bucket{labels} {cumulative}")
            plain = _labels_text(self.label_names, key)
            lines.append(f"{self.name}_sum{plain} {format_value(total)}")
            lines.append(f"{self.name}_count{plain} {count}")
        return lines


class Registry:
    """Named metrics, rendered together in registration order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, _Metric] = {}

    def register(self, metric: _Metric) -> None:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is already registered")
            self._metrics[metric.name] = metric

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        metric = Counter(name, help_text, labels)
        self.register(metric)
        return metric

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
        metric = Gauge(name, help_text, labels)
        self.register(metric)
        return metric

    def histogram(
        self, name: str, help_text: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> Histogram:
        metric = Histogram(name, help_text, buckets, labels)
        self.register(metric)
        return metric

    def render(self) -> str:
        """Every metric in the text exposition format 0.0.4 (ends with a line feed)."""
        with self._lock:
            metrics = list(self._metrics.values())
        lines: list[str] = []
        for metric in metrics:
            lines.extend(metric.render_lines())
        return "\n".join(lines) + "\n"


# 1 ms .. 10 s: a stop is normally placed in tens to hundreds of milliseconds; seconds mean a
# slow venue or a retry, and anything beyond 10 s lands in +Inf and deserves an alert anyway.
PROTECTION_LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

# Live (non-terminal) states: always rendered, at 0 when empty, so a dashboard can alert on
# ``bastion_positions{state="unprotected"} > 0`` without a missing series looking like zero.
LIVE_STATES: tuple[str, ...] = tuple(str(s) for s in State if s not in TERMINAL)


class BastionMetrics:
    """Bastion's metrics in one registry; pass :meth:`render` to the health server."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.positions = r.gauge(
            "bastion_positions", "Managed positions by state (live states only).", ["state"]
        )
        self.orders_sent = r.counter(
            "bastion_orders_sent_total", "Orders sent to the exchange, by role.", ["role"]
        )
        self.orders_rejected = r.counter(
            "bastion_orders_rejected_total", "Orders the exchange rejected, by role.", ["role"]
        )
        self.feed_lag = r.gauge(
            "bastion_feed_lag_seconds", "Seconds since the last market-data update.", ["symbol"]
        )
        self.actor_restarts = r.counter(
            "bastion_actor_restarts_total", "Actor restarts by the supervisor.", ["actor"]
        )
        self.protection_latency = r.histogram(
            "bastion_protection_latency_seconds",
            "Seconds from exposure appearing to a resting stop covering it.",
            PROTECTION_LATENCY_BUCKETS,
        )
        self.kill_switch = r.gauge(
            "bastion_kill_switch", "1 while the kill switch is latched, else 0."
        )
        self.ready = r.gauge("bastion_ready", "1 once startup reconciliation said READY, else 0.")
        for state in LIVE_STATES:
            self.positions.touch(state=state)

    def set_positions(self, counts: Mapping[str, int]) -> None:
        """Set the count for every state given; live states not given are set to 0."""
        for state in (*LIVE_STATES, *(s for s in counts if s not in LIVE_STATES)):
            self.positions.set(counts.get(state, 0), state=state)

    def set_feed_lags(self, lags: Iterable[tuple[str, float]]) -> None:
        for symbol, seconds in lags:
            self.feed_lag.set(seconds, symbol=symbol)

    def render(self) -> str:
        return self.registry.render()
