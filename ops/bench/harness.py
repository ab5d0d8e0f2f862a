"""Benchmark registry, result values and the JSON document printed on stdout.

A benchmark is a function ``run(quick: bool) -> BenchResult`` in its own module under
``ops.bench``. It is registered by one line in :data:`REGISTRY`; the module is imported only
when the benchmark runs, so ``--help`` and other benchmarks never pay for its imports.

Output (ARCHITECTURE section 7): one benchmark prints
``{"bench": NAME, "params": {...}, "results": {METRIC: {"value": 1.0, "unit": "ms"}}}``;
``all`` prints ``{"benches": [...]}`` with one such object per benchmark. Metric names are part
of the interface: results are compared over time by name.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

UNITS: frozenset[str] = frozenset({"ms", "s", "per_s", "MB", "count"})

# Significant digits kept in reported values; finer digits are measurement noise.
SIGNIFICANT_DIGITS = 6


class BenchError(Exception):
    """A benchmark name, metric or result that does not fit the harness."""


@dataclass(frozen=True, slots=True)
class Metric:
    """One measured value and its unit (one of :data:`UNITS`)."""

    value: float
    unit: str

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise BenchError(f"unit {self.unit!r} is not one of {sorted(UNITS)}")
        if not math.isfinite(self.value):
            raise BenchError(f"metric value {self.value!r} is not a finite number")

    def to_json(self) -> dict[str, Any]:
        return {"value": float(f"{self.value:.{SIGNIFICANT_DIGITS}g}"), "unit": self.unit}


@dataclass(slots=True)
class BenchResult:
    """What a benchmark returns: the conditions it ran under and its metrics by name."""

    params: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Metric] = field(default_factory=dict)

    def add(self, name: str, value: float, unit: str) -> None:
        """Record metric ``name``; each name may be recorded once."""
        if name in self.results:
            raise BenchError(f"metric {name!r} recorded twice")
        self.results[name] = Metric(float(value), unit)


BenchFn = Callable[[bool], BenchResult]

CALIBRATION_ADDS = 10_000_000


def python_loop_s(adds: int = CALIBRATION_ADDS) -> float:
    """Seconds this interpreter takes for ``adds`` integer additions in a plain loop.

    A reading of the host's speed at the time: on a shared machine the same benchmark can run
    at half its speed an hour later, and this loop slows in proportion, so figures taken at
    different times are compared together with it.
    """
    began = time.perf_counter()
    total = 0
    for i in range(adds):
        total += i
    del total
    return time.perf_counter() - began


@dataclass(frozen=True, slots=True)
class BenchSpec:
    """A registered benchmark: ``target`` is ``"module:function"``."""

    name: str
    target: str
    summary: str

    def load(self) -> BenchFn:
        module_name, _, attr = self.target.partition(":")
        fn: BenchFn = getattr(importlib.import_module(module_name), attr)
        return fn


ALL = "all"


def _registry(*specs: BenchSpec) -> dict[str, BenchSpec]:
    names = [spec.name for spec in specs]
    if ALL in names or len(set(names)) != len(names):
        raise BenchError(f"benchmark names must be unique and not {ALL!r}: {names}")
    return {spec.name: spec for spec in specs}


# One line per benchmark.
REGISTRY: dict[str, BenchSpec] = _registry(
    BenchSpec("store", "ops.bench.store:run", "durable position-store commits (SQLite WAL, FULL)"),
    BenchSpec("sim", "ops.bench.sim:run", "simulated exchange: engine candles/orders, ccxt REST"),
    BenchSpec("analyze", "ops.bench.analyze:run", "SMC analysis per symbol and one auction"),
    BenchSpec("adapter", "ops.bench.adapter:run", "exchange port via ccxt over loopback; feed"),
    BenchSpec("protection", "ops.bench.protection:run", "fill seen -> stop acked at the emulator"),
    BenchSpec("pipeline", "ops.bench.pipeline:run", "candle close -> entry acked, many symbols"),
    BenchSpec("reconcile", "ops.bench.reconcile:run", "one reconciliation pass, 200 positions"),
    BenchSpec("history", "ops.bench.history:run", "audit events/s through the history writer"),
    BenchSpec("backtest", "ops.bench.backtest:run", "candles/s through the full decision path"),
)


def run_bench(
    name: str, *, quick: bool, registry: Mapping[str, BenchSpec] | None = None
) -> dict[str, Any]:
    """Run one registered benchmark and return its JSON object."""
    specs = REGISTRY if registry is None else registry
    spec = specs.get(name)
    if spec is None:
        raise BenchError(f"unknown benchmark {name!r}; known: {', '.join(specs) or 'none'}")
    result = spec.load()(quick)
    if not isinstance(result, BenchResult):
        raise BenchError(f"benchmark {name!r} returned {type(result).__name__}, not BenchResult")
    if not result.results:
        raise BenchError(f"benchmark {name!r} reported no metrics")
    return {
        "bench": name,
        "params": dict(result.params),
        "results": {key: metric.to_json() for key, metric in result.results.items()},
    }


def run_named(
    name: str, *, quick: bool, registry: Mapping[str, BenchSpec] | None = None
) -> dict[str, Any]:
    """The document for ``name``: one benchmark's object, or ``{"benches": [...]}`` for ``all``."""
    specs = REGISTRY if registry is None else registry
    if name == ALL:
        return {"benches": [run_bench(n, quick=quick, registry=specs) for n in specs]}
    return run_bench(name, quick=quick, registry=specs)
