"""The ccxt adapter against the loopback Kraken Futures emulator (speed 0: time moves on demand)."""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

from adapters.exchange.ccxt_exchange import CcxtExchange
from adapters.retry import RetryPolicy
from adapters.sim.server import PAPER_API_KEY, PAPER_API_SECRET, start_server
from tests.adapters.conformance.harness import Fault

RULES: dict[Fault, dict[str, str]] = {
    Fault.TIMEOUT_AFTER_ACCEPT: {"kind": "timeout_after_accept", "endpoint": "sendorder"},
    Fault.TIMEOUT_BEFORE_ACCEPT: {"kind": "timeout_before_accept", "endpoint": "sendorder"},
    Fault.READ_5XX: {"kind": "http_5xx", "endpoint": "openpositions"},
    Fault.RATE_LIMIT_READ: {"kind": "rate_limit", "endpoint": "openorders"},
    Fault.RATE_LIMIT_WRITE: {"kind": "rate_limit", "endpoint": "sendorder"},
    Fault.REJECT_STOP: {"kind": "reject_stop", "endpoint": "sendorder"},
}
VENUE_IDS = {"BTC/USD:USD": "PF_XBTUSD", "ETH/USD:USD": "PF_ETHUSD"}


class CcxtHarness:
    def __init__(self, state_dir: Path, *, api_secret: str = PAPER_API_SECRET) -> None:
        self.handle = start_server(port=0, state_dir=state_dir, seed=5, speed=0, warmup_minutes=180)
        self._sleeps: list[float] = []
        self.port = CcxtExchange(
            "krakenfutures",
            api_key=PAPER_API_KEY,
            api_secret=api_secret,
            api_url=self.handle.url,
            timeout_ms=3000,
            retry=RetryPolicy(sleep=self._sleeps.append),
        )

    def _admin(self, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        data = json.dumps(body or {}).encode()
        request = urllib.request.Request(f"{self.handle.url}/_sim/{path}", data=data, method=method)
        if method == "GET":
            request = urllib.request.Request(f"{self.handle.url}/_sim/{path}")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def set_price(self, symbol: str, price: Decimal) -> None:
        self._admin("price", {"symbol": VENUE_IDS[symbol], "price": str(price)})

    def now_ms(self) -> int:
        return int(self._admin("state", method="GET")["clock_ms"])

    def advance_minutes(self, minutes: int) -> None:
        self._admin("advance", {"minutes": minutes})

    def inject(self, fault: Fault, *, times: int = 1) -> None:
        self._admin("faults", {**RULES[fault], "times": times})

    def clear_faults(self) -> None:
        self._admin("faults", {}, method="DELETE")

    def pending_faults(self) -> int:
        rules = self._admin("faults", method="GET")["rules"]
        return sum(int(r["times"] or 0) for r in rules)

    def slept(self) -> list[float]:
        return list(self._sleeps)

    def close(self) -> None:
        self.handle.stop()


def make_ccxt_harness(tmp_path: Path) -> CcxtHarness:
    return CcxtHarness(tmp_path / "emulator")
