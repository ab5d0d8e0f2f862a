"""The live crash harness: ``run.py live`` against the emulator, SIGKILLed again and again.

One emulator process (``run.py sim-exchange``, durable state in a temporary directory) lives for
the whole campaign; Bastion is started as ``run.py live`` pointed at it, with the paper profile
and the paper credentials (the processes: :mod:`tests.crash.live_processes`). Each cycle:

1. maybe place a *manual* market order at the emulator (a foreign client id) while Bastion is
   down, so startup reconciliation meets exposure it does not know, or close positions Bastion
   adopted earlier, so it meets managed positions that are gone;
2. start Bastion, armed (``BASTION_CRASH_POINT``, see :mod:`adapters.crashpoints`) with a crash
   point picked at random, or unarmed for a kill at a random moment; wait for READY
   (``system_ready`` in the JSON log). A crash point may fire before READY (reconciliation sends
   orders too): that is a kill like any other;
3. check the invariants (:mod:`tests.crash.live_invariants`) at the emulator against the
   registry, polling until they hold or ``settle_s`` passes; the last failing sample is recorded;
4. maybe place a manual order while Bastion runs, or close adopted positions at the emulator
   (an operator closing a manual trade: the registry must follow); when most symbols are held,
   move a price through a position's stop (``/_sim/price``; now and then also while Bastion is
   down), so stops fire and the strategy keeps finding free symbols; let it trade; SIGKILL it,
   from outside at a random moment, or by itself at its crash point (for exit crash points the
   emulator rejects stops for a while, so the ladder flattens with an exit order). A crash
   point not reached within ``armed_wait_s`` is replaced by an outside kill.

The check runs disarmed (a crash point fires only while the harness's arm file exists), so
every restart is checked in full. What each kill left behind is sampled before the restart
(``Report.hazards``): evidence that the kills land in the dangerous windows.

After the last kill Bastion is started once more unarmed, checked, and stopped with SIGTERM;
then the venue's whole order and fill history is checked for duplicates.

A manual position still unknown to the registry after a failed check is flattened at the
emulator (as an operator would), so one missing adoption is reported once instead of
distorting every later cycle.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import ccxt

from tests.crash.live_invariants import (
    ExchangeView,
    Finding,
    RegistryEntry,
    check_history,
    check_state,
)
from tests.crash.live_processes import SYMBOLS, Bastion, Emulator, ManualTrader

MAX_EXITS_IN_A_ROW = 3  # Bastion that keeps dying on its own is broken: stop early
KILL_MODES: tuple[tuple[str, float], ...] = (  # (mode, weight); "random" = kill from outside
    ("random", 3.0),
    ("before_send:en", 1.0),
    ("after_send:en", 1.0),
    ("before_send:sl", 1.5),  # between a fill and its stop
    ("after_send:sl", 1.0),
    ("before_send:ex", 1.0),
    ("after_send:ex", 1.0),
    ("before_send:tp", 0.5),
    ("after_send:tp", 0.5),
)


# --------------------------------------------------------------------------- the campaign

# a check over one consistent sample: findings, and the views they came from
Sample = tuple[list[Finding], ExchangeView | None, list[RegistryEntry]]


@dataclass(frozen=True, slots=True)
class Violation:
    cycle: int
    after: str  # the kill that preceded the check ("kill 7 (before_send:sl)", "final", ...)
    finding: Finding

    def __str__(self) -> str:
        f = self.finding
        return f"cycle {self.cycle} after {self.after}: {f.kind} {f.subject}: {f.detail}"


@dataclass(slots=True)
class Report:
    work: Path
    kills: int = 0
    total_s: float = 0.0
    modes: Counter[str] = field(default_factory=Counter)  # how each kill happened
    checks: int = 0
    check_s: list[float] = field(default_factory=list)
    ready_s: list[float] = field(default_factory=list)
    cycle_s: list[float] = field(default_factory=list)
    hazards: Counter[str] = field(default_factory=Counter)  # findings right after kills
    manual_orders: int = 0
    manual_closes: int = 0
    stops_run: int = 0
    transient: int = 0  # findings seen at a deadline that had not lasted persist_s
    latches: list[str] = field(default_factory=list)  # kill switch latched by Bastion itself
    repairs: int = 0
    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def by_kind(self) -> Counter[str]:
        return Counter(v.finding.kind for v in self.violations)

    def summary(self) -> str:
        lines = [
            f"live crash harness: {self.kills} kills, {len(self.violations)} violations",
            f"  kills by mode: {dict(sorted(self.modes.items()))}",
            f"  checks: {self.checks}, manual orders: {self.manual_orders}, "
            f"manual closes: {self.manual_closes}, stops run: {self.stops_run}, "
            f"repairs: {self.repairs}",
            f"  total {self.total_s:.0f}s; logs and stores under {self.work}",
        ]
        if self.cycle_s:
            mean = sum(self.cycle_s) / len(self.cycle_s)
            lines.append(f"  cycle: mean {mean:.1f}s, max {max(self.cycle_s):.1f}s")
        if self.hazards:
            lines.append(
                f"  left by the kills (then repaired): {dict(sorted(self.hazards.items()))}"
            )
        if self.ready_s:
            mean = sum(self.ready_s) / len(self.ready_s)
            lines.append(f"  start to READY: mean {mean:.1f}s, max {max(self.ready_s):.1f}s")
        if self.check_s:
            mean = sum(self.check_s) / len(self.check_s)
            lines.append(f"  check settle: mean {mean:.1f}s, max {max(self.check_s):.1f}s")
        if self.latches:
            lines.append(f"  kill switch latched by Bastion {len(self.latches)}x (resumed):")
            lines.extend(f"    {latch}" for latch in self.latches[:10])
        if self.transient:
            lines.append(f"  transient findings at a deadline (not counted): {self.transient}")
        if self.violations:
            distinct = len({(v.finding.kind, v.finding.subject) for v in self.violations})
            lines.append(
                f"  violations by kind: {dict(sorted(self.by_kind().items()))} "
                f"({distinct} distinct kind/subject pairs)"
            )
            lines.extend(f"    {v}" for v in self.violations[:60])
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


class Campaign:
    """Runs the cycles described in the module docstring and collects a :class:`Report`."""

    emulator: Emulator
    trader: ManualTrader
    bastion: Bastion

    def __init__(
        self,
        work: Path,
        *,
        kills: int,
        seed: int,
        speed: float = 120.0,
        settle_s: float = 8.0,
        persist_s: float = 3.0,
        armed_wait_s: float = 3.0,
        manual_share: float = 0.3,
        log: Callable[[str], None] = print,
    ) -> None:
        self.work = work
        self.kills = kills
        self.rng = random.Random(seed)
        self.speed = speed
        self.settle_s = settle_s
        self.persist_s = persist_s
        self.armed_wait_s = armed_wait_s
        self.manual_share = manual_share
        self.log = log
        self.report = Report(work=work)
        self._seen_history: set[tuple[str, str]] = set()
        self._exits_in_a_row = 0
        self._last_kill = "a cold start"

    # ------------------------------------------------------------------ running

    def run(self) -> Report:
        began = time.monotonic()
        self.work.mkdir(parents=True, exist_ok=True)
        self.emulator = Emulator.start(
            self.work, speed=self.speed, seed=self.rng.randrange(1 << 16)
        )
        bastion = None
        try:
            self.trader = ManualTrader(self.emulator.url)
            self.bastion = bastion = Bastion(self.work, self.emulator)
            cycle = 0
            while self.report.kills < self.kills:
                cycle += 1
                started = time.monotonic()
                self._cycle(cycle)
                self.report.cycle_s.append(time.monotonic() - started)
                if self._exits_in_a_row >= MAX_EXITS_IN_A_ROW:
                    self.report.notes.append(
                        f"aborted after {self.report.kills} kills: Bastion exited on its own "
                        f"{MAX_EXITS_IN_A_ROW} runs in a row"
                    )
                    break
            self._final(cycle + 1)
        finally:
            if bastion is not None and bastion.alive():
                bastion.kill()
            self.emulator.stop()
        self._check_history(self.kills + 1, "the end (emulator stopped)")
        self.report.total_s = time.monotonic() - began
        return self.report

    def _pick_mode(self) -> str:
        modes, weights = zip(*KILL_MODES, strict=True)
        return self.rng.choices(modes, weights)[0]

    def _cycle(self, cycle: int) -> None:
        mode = self._pick_mode()
        arm = None
        if mode != "random":
            arm = mode if self.rng.random() < 0.75 else f"{mode}@2"
        if self.rng.random() < self.manual_share / 2:
            self._manual(cycle, "while down")
        if self.rng.random() < 0.5:
            self._close_adopted(cycle, "while down")
        if self.rng.random() < 0.5:
            self._shake(cycle, "while down")
        # now and then armed from the start: a crash inside startup reconciliation
        self.bastion.start(arm, armed=arm is not None and self.rng.random() < 0.2)
        if not self.bastion.wait_ready():
            self._killed(cycle, arm, "before READY")
            return
        self.report.ready_s.append(time.monotonic() - self.bastion.started_at)
        self.bastion.disarm()  # the check sees the whole settling, uninterrupted
        if not self._check(cycle, self._last_kill):
            self._killed(cycle, arm, "during the check")
            return
        if self.rng.random() < self.manual_share / 2:
            self._manual(cycle, "while running")
        if self.rng.random() < 0.5:
            self._close_adopted(cycle, "while running")
        self._shake(cycle, "while running")
        if arm is None:
            self.bastion.wait_exit(self.rng.uniform(0.1, 2.0))
            self._killed(cycle, arm, "at random")
            return
        if mode.endswith(":ex"):  # make the ladder flatten: the venue refuses stops for a while
            self.emulator.add_fault({"kind": "reject_stop", "endpoint": "sendorder", "times": -1})
        self.bastion.arm()
        code = self.bastion.wait_exit(self.armed_wait_s)
        self.bastion.disarm()
        self.emulator.clear_faults()
        self._killed(cycle, arm, "at its crash point" if code is not None else "not reached")

    def _killed(self, cycle: int, arm: str | None, how: str) -> None:
        """Make sure the process is dead by SIGKILL; anything else is a finding."""
        self.emulator.clear_faults()
        code = self.bastion.kill()
        label = f"{arm}: {how}" if arm else how
        if code != -signal.SIGKILL:  # it died on its own: not a kill, a finding
            self._exited(cycle, label, f"exit {code}")
            return
        self._exits_in_a_row = 0
        self.report.kills += 1
        key = arm.split("@")[0] if arm and how != "not reached" else "outside"
        self.report.modes[f"{key} ({how})" if arm else key] += 1
        # what the kill left behind, before any restart repairs it (evidence that the kills
        # land in the dangerous windows; not a violation by itself)
        left = self._sample()
        if left is not None:
            self.report.hazards.update(f.kind for f in left[0])
        self._last_kill = f"kill {self.report.kills} ({label})"
        self.log(f"cycle {cycle}: {self._last_kill}")

    def _exited(self, cycle: int, label: str, detail: str) -> None:
        self._exits_in_a_row += 1
        violation = Violation(cycle, label, Finding("bastion_exited", self._run(), detail))
        self.report.violations.append(violation)
        self.report.notes.append(f"{self._run()} stderr ends: {self.bastion.tail(3)}")
        self.log(f"  VIOLATION {violation}")

    def _run(self) -> str:
        return f"run {self.bastion.runs} ({self.work}/bastion-{self.bastion.runs:03d}.err)"

    def _final(self, cycle: int) -> None:
        """One more start, unarmed: checked, then stopped with SIGTERM (must exit 0)."""
        after = f"{self._last_kill}, final start"
        self.bastion.start(None)
        if not self.bastion.wait_ready():
            self._exited(cycle, after, f"exit {self.bastion.kill()} before READY")
            return
        if not self._check(cycle, after):
            self._exited(cycle, after, f"exit {self.bastion.kill()} during the check")
            return
        code = self.bastion.terminate()
        if code != 0:
            self._exited(cycle, "final stop", f"SIGTERM, exit {code}")

    # ------------------------------------------------------------------ manual trades

    def _manual(self, cycle: int, when: str) -> None:
        """A market order of the operator on a symbol flat at the exchange and unmanaged."""
        ex = self.emulator.view()
        busy = {e.symbol for e in self.bastion.registry()} | {o.symbol for o in ex.orders}
        free = [s for s in SYMBOLS if s not in ex.positions and s not in busy]
        if not free:
            return
        symbol = self.rng.choice(free)
        side = self.rng.choice(("buy", "sell"))
        cid = self.trader.market(symbol, side, self.rng.uniform(1_000, 5_000))
        self.report.manual_orders += 1
        self.log(f"cycle {cycle}: manual {side} {symbol} {when} ({cid})")

    def _close_adopted(self, cycle: int, when: str) -> None:
        """The operator closes adopted positions at the exchange, under Bastion's feet: the
        registry must follow (and the symbols become free for the strategy again)."""
        ex = self.emulator.view()
        for entry in self.bastion.registry():
            qty = ex.positions.get(entry.symbol, Decimal(0))
            if entry.origin != "adopted" or qty == 0:
                continue
            side = "sell" if qty > 0 else "buy"
            try:
                cid = self.trader.order(entry.symbol, side, float(abs(qty)), reduce_only=True)
            except ccxt.BaseError as err:  # moved meanwhile (its stop fired): fine
                self.report.notes.append(f"closing {entry.symbol} failed: {err}")
                continue
            self.report.manual_closes += 1
            self.log(f"cycle {cycle}: manual close of {entry.symbol} {qty} {when} ({cid})")

    def _shake(self, cycle: int, when: str) -> None:
        """The market runs through a stop: a position's price is set just beyond its stop, so
        the stop fires. Always when most symbols are held (positions that lost their target in
        a crash would otherwise sit until the market reaches their stop, and the strategy would
        have no free symbol to enter), else now and then."""
        ex = self.emulator.view()
        if len(ex.positions) < len(SYMBOLS) - 1 and self.rng.random() >= 0.15:
            return
        held = []
        for symbol, qty in ex.positions.items():
            stops = [o for o in ex.orders if o.symbol == symbol and o.kind == "stp"]
            if stops and stops[0].stop_price is not None:
                held.append((symbol, qty, stops[0].stop_price))
        if not held:
            return
        symbol, qty, trigger = self.rng.choice(sorted(held))
        price = trigger * (Decimal("0.997") if qty > 0 else Decimal("1.003"))
        self.emulator.set_price(symbol, price)
        self.report.stops_run += 1
        self.log(f"cycle {cycle}: market runs through the stop of {symbol} {qty} {when}")

    # ------------------------------------------------------------------ checking

    def _sample(self) -> Sample | None:
        """The state invariants over one consistent sample: the exchange read twice, unchanged,
        around the registry read; ``None`` if it moved meanwhile."""
        before = self.emulator.view()
        registry = self.bastion.registry()
        after = self.emulator.view()
        if before.key() != after.key():
            return None
        return check_state(after, registry), after, registry

    def _check(self, cycle: int, after: str) -> bool:
        """Poll the state invariants until they hold or ``settle_s`` passes; False if Bastion
        died meanwhile (its crash point fired: the next start is checked instead).

        At the deadline a finding counts only if it held in every consistent sample of the
        last ``persist_s``: one that just appeared is Bastion at work while it trades (a stop
        that fired a moment ago, a fill not yet polled) and is left to the next check."""
        started = time.monotonic()
        deadline = started + self.settle_s
        sample: Sample | None = None
        since: dict[tuple[str, str], float] = {}  # finding -> first of its unbroken sightings
        while True:
            if not self.bastion.alive():
                return False
            fresh = self._sample()
            now = time.monotonic()
            if fresh is not None:
                sample = fresh
                since = {(f.kind, f.subject): since.get((f.kind, f.subject), now) for f in fresh[0]}
                if not since:
                    break
            if now >= deadline and (sample is not None or now >= deadline + self.settle_s):
                break
            time.sleep(0.1)
        if not self.bastion.alive():
            return False
        if sample is None:  # the venue never held still long enough: say so, never pass
            inconclusive = Finding("check_inconclusive", "-", "no consistent sample")
            sample = ([inconclusive], None, [])
        findings, last_ex, last_reg = sample
        cutoff = time.monotonic() - self.persist_s
        last = [f for f in findings if since.get((f.kind, f.subject), 0.0) <= cutoff]
        self.report.transient += len(findings) - len(last)
        self.report.checks += 1
        self.report.check_s.append(time.monotonic() - started)
        for finding in last:
            self.report.violations.append(Violation(cycle, after, finding))
            self.log(f"  VIOLATION {Violation(cycle, after, finding)}")
        if last and last_ex is not None:
            self._repair(last, last_ex, last_reg)
        self._check_history(cycle, after)
        self._resume_if_latched(cycle)
        return True

    def _resume_if_latched(self, cycle: int) -> None:
        """Bastion latched its kill switch (its ladder escalated): note why and release it, as
        the operator would, or no entry (and no entry crash point) would happen again."""
        latch = self.bastion.kill_switch()
        if not latch.get("latched"):
            return
        self.report.latches.append(f"cycle {cycle}: {latch.get('reason')}")
        outcome = self.bastion.resume()
        self.log(f"cycle {cycle}: kill switch latched ({latch.get('reason')}); resume {outcome}")

    def _check_history(self, cycle: int, after: str) -> None:
        orders, fills = self.emulator.history()
        for finding in check_history(orders, fills, self.emulator.account_id):
            key = (finding.kind, finding.subject)
            if key in self._seen_history:
                continue
            self._seen_history.add(key)
            self.report.violations.append(Violation(cycle, after, finding))
            self.log(f"  VIOLATION {Violation(cycle, after, finding)}")

    def _repair(
        self, findings: list[Finding], ex: ExchangeView, registry: list[RegistryEntry]
    ) -> None:
        """Flatten exposure the registry still does not know after the check, as an operator
        would, so that one missed adoption is not counted again in every later cycle."""
        managed = {e.symbol for e in registry}
        for finding in findings:
            symbol = finding.subject
            if finding.kind != "not_in_registry" or symbol in managed:
                continue
            qty = ex.positions.get(symbol, Decimal(0))
            if qty == 0:
                continue
            side = "sell" if qty > 0 else "buy"
            try:
                self.trader.order(symbol, side, float(abs(qty)), reduce_only=True, tag="repair")
            except ccxt.BaseError as err:  # it may have moved meanwhile: note it, go on
                self.report.notes.append(f"repair of {symbol} failed: {err}")
                continue
            self.report.repairs += 1


__all__ = ["Campaign", "Report", "Violation"]
