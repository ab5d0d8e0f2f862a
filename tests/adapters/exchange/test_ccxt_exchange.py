"""ccxt adapter specifics beyond the shared conformance suite."""

from __future__ import annotations

import itertools
import threading
import time
from decimal import Decimal
from pathlib import Path

import ccxt
import pytest

from adapters.exchange import ccxt_exchange
from adapters.exchange.budget import RequestBudget
from adapters.exchange.ccxt_exchange import point_urls_at
from adapters.exchange.errors import translate
from adapters.exchange.factory import exchange_from_settings
from adapters.retry import RateLimited
from adapters.settings import load_settings
from adapters.sim.server import PAPER_API_KEY, PAPER_API_SECRET
from domain.errors import AmbiguousOutcome, Fatal, Rejected, Temporary
from domain.models import Order, OrderRole, OrderStatus, OrderType, Side
from tests.adapters.conformance.ccxt_harness import CcxtHarness
from tests.adapters.conformance.harness import BTC


@pytest.mark.parametrize(
    ("error", "on_read", "on_write"),
    [
        (ccxt.AuthenticationError("bad key"), Fatal, Fatal),
        (ccxt.PermissionDenied("no trading"), Fatal, Fatal),
        (ccxt.RateLimitExceeded("apiLimitExceeded"), RateLimited, RateLimited),
        (ccxt.DDoSProtection("429"), RateLimited, RateLimited),
        (ccxt.InvalidNonce("nonceBelowThreshold"), Temporary, Temporary),
        (ccxt.RequestTimeout("timed out"), Temporary, AmbiguousOutcome),
        (ccxt.ExchangeNotAvailable("503"), Temporary, AmbiguousOutcome),
        (ccxt.NetworkError("reset"), Temporary, AmbiguousOutcome),
        (ccxt.BadResponse("garbled"), Temporary, AmbiguousOutcome),
        (ccxt.InsufficientFunds("insufficientAvailableFunds"), Rejected, Rejected),
        (ccxt.InvalidOrder("invalidPrice"), Rejected, Rejected),
        (ccxt.DuplicateOrderId("clientOrderIdAlreadyExist"), AmbiguousOutcome, AmbiguousOutcome),
        (ccxt.BadSymbol("contractNotFound"), Rejected, Rejected),
        (ConnectionResetError("raw socket error"), Temporary, AmbiguousOutcome),
    ],
)
def test_translation_depends_on_read_or_write(
    error: Exception, on_read: type, on_write: type
) -> None:
    assert type(translate(error, write=False)) is on_read
    assert type(translate(error, write=True)) is on_write


def test_translated_messages_carry_no_secret() -> None:
    secret = "c2VjcmV0LXZhbHVl"
    err = translate(ccxt.ExchangeError(f"echo {secret} back"), write=True, secrets=[secret])
    assert secret not in str(err)
    assert isinstance(err, Rejected)
    assert secret not in err.reason


def test_point_urls_at_keeps_paths() -> None:
    urls = {"public": "https://futures.kraken.com/derivatives/api/", "logo": 3}
    point_urls_at(urls, "http://127.0.0.1:8765")
    assert urls == {"public": "http://127.0.0.1:8765/derivatives/api/", "logo": 3}


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_budget_keeps_a_reserve_for_urgent_calls() -> None:
    t = FakeTime()
    budget = RequestBudget(capacity=100, window_s=10, reserve=30, clock=t.clock, sleep=t.sleep)
    for _ in range(7):
        assert budget.acquire("sendorder") == 0  # 70 spent, 30 left: the reserve
    assert budget.acquire("sendorder", urgent=True) == 0  # urgent may dip into it: 20 left
    with pytest.raises(TimeoutError):
        budget.acquire("openorders", timeout_s=0.5)  # needs 32 units: 1.2 s of refill
    assert budget.acquire("openorders") == pytest.approx(1.2)
    budget.rate_limited()
    assert budget.available == 0


def test_budget_refills_over_time() -> None:
    now = [0.0]
    budget = RequestBudget(
        capacity=50, window_s=10, reserve=0, clock=lambda: now[0], sleep=lambda s: None
    )
    for _ in range(5):
        budget.acquire("sendorder")
    now[0] = 2.0  # 5 units per second
    assert budget.available == 10


@pytest.fixture
def harness(tmp_path: Path):
    h = CcxtHarness(tmp_path / "emulator")
    h.set_price(BTC, Decimal(50_000))
    yield h
    h.close()


def test_bad_secret_is_fatal_and_never_echoed(tmp_path: Path) -> None:
    wrong = "d3Jvbmctc2VjcmV0LWZvci10ZXN0cw=="
    h = CcxtHarness(tmp_path / "emulator", api_secret=wrong)
    try:
        with pytest.raises(Fatal) as err:
            h.port.account()
        assert wrong not in str(err.value)
    finally:
        h.close()


def _stop(client_id: str) -> Order:
    return Order(
        client_id=client_id,
        symbol=BTC,
        role=OrderRole.STOP,
        type=OrderType.STOP,
        side=Side.SELL,
        qty=Decimal("0.01"),
        reduce_only=True,
        status=OrderStatus.SENDING,
        trigger_price=Decimal(45_000),
        position_id="u1",
    )


def test_a_stop_does_not_wait_behind_a_slow_read(harness: CcxtHarness) -> None:
    port = harness.port
    entry = Order(
        "bst-u1-en-1",
        BTC,
        OrderRole.ENTRY,
        OrderType.MARKET,
        Side.BUY,
        Decimal("0.01"),
        False,
        OrderStatus.SENDING,
        position_id="u1",
    )
    port.place_order(entry)
    harness._admin("faults", {"kind": "latency", "endpoint": "openorders", "ms": 3000})
    slow_done = threading.Event()
    reader = threading.Thread(target=lambda: (port.open_orders(BTC), slow_done.set()))
    reader.start()
    time.sleep(0.2)  # let the read take the ordinary lane
    started = time.monotonic()
    placed = port.place_order(_stop("bst-u1-sl-1"))
    elapsed = time.monotonic() - started
    assert placed.status is OrderStatus.ACKED
    assert not slow_done.is_set()  # the read is still held by the venue
    assert elapsed < 2.0  # waiting behind the read would take about 2.8 s
    reader.join(timeout=10)
    assert slow_done.is_set()


def test_ohlcv_pages_without_gaps_or_duplicates(
    harness: CcxtHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ccxt_exchange, "OHLCV_PAGE", 40)
    now = harness.now_ms()
    candles = harness.port.ohlcv(BTC, "1m", since=now - 170 * 60_000)
    times = [c.open_time for c in candles]
    assert len(times) == len(set(times)) >= 160
    assert all(b - a == 60_000 for a, b in itertools.pairwise(times))
    bounded = harness.port.ohlcv(BTC, "1m", since=times[0], until=times[99] + 60_000)
    assert [c.open_time for c in bounded] == times[:100]


def test_settings_build_a_working_port(harness: CcxtHarness) -> None:
    settings = load_settings(
        None,
        {
            "BASTION_EXCHANGE__API_URL": harness.handle.url,
            "BASTION_EXCHANGE__API_KEY": PAPER_API_KEY,
            "BASTION_EXCHANGE__API_SECRET": PAPER_API_SECRET,
        },
    )
    port = exchange_from_settings(settings.exchange)
    assert port.name == "krakenfutures"
    assert port.account().equity > 0
