"""Telegram end to end: the paper service, the real python-telegram-bot client, a fake Bot API.

One paper system (the emulator at 120x) runs for the whole module with Telegram pointed at a
loopback :class:`~tests.telegram.fake_bot_api.FakeBotApi`. Operators are chat 100 with users 7
and 8; everything else is a stranger. Each test talks to the service only through the fake Bot
API, as a phone would, and checks the service's answers, the emulator and the audit trail.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from actors.alerting import AlertRelay
from actors.core import EXECUTION, RISK
from actors.messages import Alert, PlaceIntent, Severity
from actors.operations import Operations
from actors.runtime import System
from adapters.settings import Settings, load_settings
from adapters.telegram.bot import TelegramControl
from domain.models import OrderIntent, OrderType, PositionSide
from domain.precision import Rounding, to_step
from tests.paper_run import paper_running
from tests.telegram.fake_bot_api import FakeBotApi

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "424242:fake-token-for-tests"
CHAT, OPERATOR, SECOND = 100, 7, 8
STRANGER = 999
CONFIRM_S = 4.0
ANSWER_S = 20.0


@dataclass
class Service:
    api: FakeBotApi
    system: System
    settings: Settings
    data: Path
    env: dict[str, str]

    @property
    def ops(self) -> Operations:
        assert isinstance(self.system.operations, Operations)
        return self.system.operations

    @property
    def relay(self) -> AlertRelay:
        assert self.system.relay is not None
        return self.system.relay

    @property
    def bot(self) -> TelegramControl:
        telegram = self.system.telegram
        assert isinstance(telegram, TelegramControl)
        return telegram

    def ask(self, text: str, *, user: int = OPERATOR, chat: int = CHAT) -> str:
        """Send ``text`` and return the service's reply (alerts in between are skipped)."""
        return str(self.reply_to(text, user=user, chat=chat)["text"])

    def reply_to(self, text: str, *, user: int = OPERATOR, chat: int = CHAT) -> dict[str, Any]:
        before = len(self.api.sent(chat))
        self.api.send_text(text, chat_id=chat, user_id=user)

        def replies() -> list[dict[str, Any]]:
            return [m for m in self.api.sent(chat)[before:] if m.get("reply_parameters")]

        assert self.api.wait_for(lambda: bool(replies()), ANSWER_S), text
        return replies()[0]

    def venue(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.system.venue_url}/_sim/state", timeout=5) as answer:
            return dict(json.loads(answer.read()))

    def events(self, reason_code: str) -> list[dict[str, Any]]:
        with sqlite3.connect(self.data / "paper" / "history.db") as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "SELECT who, payload FROM system_events WHERE reason_code = ?", (reason_code,)
            ).fetchall()
        return [{"who": r["who"], **json.loads(r["payload"])} for r in rows]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("telegram")
    api = FakeBotApi(TOKEN).start()
    env = {
        "BASTION_DATA_DIR": str(tmp / "data"),
        "BASTION_LOG_DIR": str(tmp / "logs"),
        "BASTION_TELEGRAM__TOKEN": TOKEN,
        "BASTION_TELEGRAM__ALLOWED_CHAT_IDS": json.dumps([CHAT]),
        "BASTION_TELEGRAM__ALLOWED_USER_IDS": json.dumps([OPERATOR, SECOND]),
        "BASTION_TELEGRAM__API_BASE_URL": api.base_url,
        "BASTION_TELEGRAM__CONFIRM_TIMEOUT_S": str(CONFIRM_S),
        "BASTION_TELEGRAM__ALERT_MIN_INTERVAL_S": "0.2",
        "BASTION_HISTORY__FLUSH_INTERVAL_S": "0.1",
    }
    settings = load_settings(ROOT / "config.paper.yaml", env)
    logs = tmp / "logs"  # this process logs to the console; /logs reads the service's file
    logs.mkdir()
    lines = [
        {"timestamp": f"2026-11-22T07:00:0{i}.000Z", "level": "info", "event": f"line_{i}"}
        for i in range(5)
    ]
    (logs / "bastion.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    try:
        with paper_running(settings, speed=120.0) as run:
            system = run.system
            assert isinstance(system.telegram, TelegramControl)
            assert system.telegram.ready.wait(30), "Telegram polling did not start"
            yield Service(api, system, settings, tmp / "data", env)
    finally:
        api.stop()
    assert run.code == 0


def test_startup_and_ready_are_announced(service: Service) -> None:
    api = service.api
    assert api.wait_sent(lambda m: "READY" in m["text"] and m["chat_id"] == CHAT, ANSWER_S)
    texts = [m["text"] for m in api.sent(CHAT)]
    assert any(t.startswith("Bastion paper starting") for t in texts), texts


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/help", "Bastion commands"),
        ("/status", "Bastion paper: "),
        ("/positions", ("no positions", " @ ")),
        ("/balance", "equity "),
        ("/pnl", "PnL 24h: "),
        ("/pnl 7", "PnL 7 days: "),
        ("/daily", "day  trades  pnl"),
        ("/stops", ("no positions", ": stop ")),
        ("/orders", ("no open orders", " en ", " sl ", " tp ", " ex ")),
        ("/health", "healthy"),
        ("/logs 3", "line_2"),
    ],
)
def test_each_read_command_is_answered(
    service: Service, command: str, expected: str | tuple[str, ...]
) -> None:
    reply = service.ask(command)
    wanted = (expected,) if isinstance(expected, str) else expected
    assert any(w in reply for w in wanted), reply
    assert "failed" not in reply, reply
    if command == "/logs 3":
        assert "line_1" not in reply and "line_4" in reply  # the last three, oldest first


def test_strangers_get_no_answer_and_are_audited(service: Service) -> None:
    api = service.api
    replies_before = len([m for m in api.sent(CHAT) if m.get("reply_parameters")])
    unauthorized = service.bot.stats.unauthorized
    api.send_text("/status", chat_id=STRANGER, user_id=OPERATOR)  # an operator, wrong chat
    api.send_text("/kill", chat_id=CHAT, user_id=STRANGER)  # the right chat, a stranger
    assert api.wait_for(lambda: service.bot.stats.unauthorized == unauthorized + 2, ANSWER_S)
    assert service.ask("/health").startswith(("healthy", "UNHEALTHY"))  # served after them
    assert api.sent(STRANGER) == []
    replies = [m for m in api.sent(CHAT) if m.get("reply_parameters")]
    assert len(replies) == replies_before + 1  # only the /health answer
    assert api.wait_for(lambda: len(service.events("unauthorized")) >= 2, ANSWER_S)
    seen = {(e["who"], e["chat_id"], e["text"]) for e in service.events("unauthorized")}
    assert (f"telegram:{OPERATOR}", STRANGER, "/status") in seen
    assert (f"telegram:{STRANGER}", CHAT, "/kill") in seen


def test_every_command_is_audited_with_its_sender(service: Service) -> None:
    service.ask("/balance", user=SECOND)
    assert service.api.wait_for(
        lambda: any(e["who"] == f"telegram:{SECOND}" for e in service.events("balance")),
        ANSWER_S,
    )


def _buttons(message: dict[str, Any]) -> dict[str, str]:
    markup = message.get("reply_markup") or {}
    return {b["text"]: b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row}


def _confirmation(service: Service, command: str) -> dict[str, Any]:
    message = service.reply_to(command)
    assert "Confirm within" in message["text"]
    assert set(_buttons(message)) == {"Confirm", "Cancel"}
    return message


def _latched(service: Service) -> bool:
    return bool(service.ops.status()["kill_switch"])


def test_a_confirmation_expires_and_cancel_does_nothing(service: Service) -> None:
    api = service.api
    message = _confirmation(service, "/kill")
    expired = api.wait_sent(
        lambda m: m.get("message_id") == message["message_id"] and "expired" in m["text"],
        CONFIRM_S + ANSWER_S,
    )
    assert expired is not None
    assert not _latched(service)
    message = _confirmation(service, "/flatten")
    api.press_button(message["message_id"], _buttons(message)["Cancel"], chat_id=CHAT, user_id=7)
    assert api.wait_sent(
        lambda m: m.get("message_id") == message["message_id"] and "cancelled" in m["text"],
        ANSWER_S,
    )
    assert not _latched(service)


def _working_entries(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        o
        for account in state["accounts"]
        for o in account["open_orders"]
        if not o["reduce_only"] and str(o.get("cli_ord_id") or "").startswith("bst-")
    ]


def _naked(state: dict[str, Any]) -> list[str]:
    naked = []
    for account in state["accounts"]:
        for pos in account["positions"]:
            stops = [
                o
                for o in account["open_orders"]
                if o["symbol"] == pos["symbol"] and o["kind"] == "stp" and o["reduce_only"]
            ]
            if not stops:
                naked.append(pos["symbol"])
    return naked


def _rest_entries(service: Service, only: str | None = None) -> None:
    """Give execution a limit entry 20% below the mark on each symbol nothing holds."""

    def where(core: Any) -> tuple[dict[str, str], dict[str, Any], set[str]]:
        held = {v.symbol for v in core.views()}
        return core.port.venue_ids(), dict(core.port.instruments()), held

    venue_ids, instruments, held = service.system.ask(EXECUTION, where)
    prices = service.venue()["prices"]
    now = int(time.time() * 1000)
    for symbol in [only] if only else service.settings.universe.symbols:
        if symbol in held:
            continue
        inst = instruments[symbol]
        mark = Decimal(prices[venue_ids[symbol]]["mark"])
        entry = to_step(mark * Decimal("0.8"), inst.tick_size, Rounding.DOWN)
        stop = to_step(mark * Decimal("0.7"), inst.tick_size, Rounding.DOWN)
        intent = OrderIntent(
            symbol,
            PositionSide.LONG,
            inst.min_size,
            OrderType.LIMIT,
            entry,
            stop,
            strategy="test",
            created_at=now,
        )
        service.system.directory.tell(EXECUTION, PlaceIntent(intent))


def _stop_orders(state: dict[str, Any]) -> set[str]:
    return {
        str(o["cli_ord_id"])
        for account in state["accounts"]
        for o in account["open_orders"]
        if o["kind"] == "stp" and o["reduce_only"]
    }


def test_kill_through_telegram_cancels_entries_and_keeps_stops(service: Service) -> None:
    """The scenario: /kill while paper trades; time from the confirmation to the emulator
    showing no working entry of Bastion's (target < 2 s), with every position's stop kept."""
    api = service.api
    message = _confirmation(service, "/kill")
    other = _buttons(message)["Confirm"]
    api.press_button(message["message_id"], other, chat_id=CHAT, user_id=SECOND)  # not the asker
    assert api.wait_for(
        lambda: any("only the operator who asked" in a.get("text", "") for a in api.answered()),
        ANSWER_S,
    )
    assert not _latched(service)
    _rest_entries(service)  # limit entries far from the market: working when the kill comes
    assert api.wait_for(lambda: len(_working_entries(service.venue())) >= 1, ANSWER_S)
    before = service.venue()
    entries_before = len(_working_entries(before))
    pressed = time.monotonic()
    api.press_button(message["message_id"], other, chat_id=CHAT, user_id=OPERATOR)
    deadline = pressed + 10
    while time.monotonic() < deadline:
        state = service.venue()
        if _latched(service) and not _working_entries(state):
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - pressed
    state = service.venue()
    assert _working_entries(state) == []
    assert _naked(state) == []
    # every stop resting before the kill still rests (a stop that fired meanwhile closed
    # its position: its symbol is flat at the venue)
    held = {p["symbol"] for a in state["accounts"] for p in a["positions"]}
    kept = _stop_orders(state)
    for account in before["accounts"]:
        for order in account["open_orders"]:
            if order["kind"] == "stp" and order["reduce_only"] and order["symbol"] in held:
                assert order["cli_ord_id"] in kept, order
    assert elapsed < 2.0, f"kill took {elapsed:.2f}s"
    done = api.wait_sent(
        lambda m: m.get("message_id") == message["message_id"] and "stops kept" in m["text"],
        ANSWER_S,
    )
    assert done is not None and "latched" in done["text"]
    print(f"\n/kill via Telegram: {elapsed:.3f}s to no working entry ({entries_before} before)")
    assert "released" in service.ask("/resume")
    assert not _latched(service)


def test_alerts_are_delivered_and_deduplicated(service: Service) -> None:
    api = service.api
    relay = service.relay
    now = int(time.time() * 1000)
    for i in range(3):  # the same rung three times: one message
        relay.tell(Alert("ladder_retry", Severity.WARNING, "ETH/USD:USD", f"retry {i}", now + i))
    relay.tell(Alert("ladder_retry", Severity.WARNING, "SOL/USD:USD", "retry sol", now))
    assert api.wait_sent(lambda m: m["text"] == "WARNING: retry sol", ANSWER_S)
    assert api.wait_sent(lambda m: m["text"] == "WARNING: retry 0", ANSWER_S)
    time.sleep(1.0)
    texts = [m["text"] for m in api.sent(CHAT)]
    assert "WARNING: retry 1" not in texts and "WARNING: retry 2" not in texts
    assert service.bot.stats.alerts_collapsed >= 2


def test_a_failing_bot_api_is_retried_and_trading_goes_on(service: Service) -> None:
    api = service.api
    sent_before = service.bot.stats.send_failures
    api.fail("sendMessage", 502, times=3)
    api.fail("sendMessage", 429, times=1, retry_after=1)
    service.relay.tell("after the outage")
    started = time.monotonic()
    while time.monotonic() - started < 5.0:  # trading goes on while Telegram fails
        assert all(service.system.supervisor.heartbeat(2.0).values())
        time.sleep(0.5)
    assert api.wait_sent(lambda m: m["text"] == "after the outage", ANSWER_S)
    assert service.bot.stats.send_failures >= sent_before + 4
    api.fail("getUpdates", 502, times=2)
    assert "Bastion paper" in service.ask("/status")


def test_a_second_poller_conflict_is_survived(service: Service) -> None:
    api = service.api
    api.conflict(2)
    assert api.wait_for(lambda: "Conflict" in service.bot.stats.polling_errors, ANSWER_S)
    assert "Bastion paper" in service.ask("/status")


def test_pause_and_unpause_a_symbol(service: Service) -> None:
    assert service.ask("/pause btc") == "BTC/USD:USD: paused (paused symbols: BTC/USD:USD)"
    assert "paused: BTC/USD:USD" in service.ask("/status")
    assert service.ask("/unpause BTC/USD:USD").startswith("BTC/USD:USD: trading")
    assert "usage: /pause <symbol>" in service.ask("/pause nosuchcoin")


def test_close_asks_for_confirmation_then_closes(service: Service) -> None:
    api = service.api
    xrp = "XRP/USD:USD"

    def ours_rests() -> bool:
        """Our resting entry holds XRP (one that cannot fill or vanish by itself); until then
        place one whenever XRP is free (the strategy may hold it for a while)."""
        views = [v for v in service.ops.positions()["positions"] if v["symbol"] == xrp]
        if not views:
            _rest_entries(service, only=xrp)
        return any(v["strategy"] == "test" for v in views)

    assert api.wait_for(ours_rests, 60.0)
    message = _confirmation(service, "/close xrp")
    assert message["text"].startswith("Close the XRP/USD:USD position at market?")
    api.press_button(
        message["message_id"], _buttons(message)["Confirm"], chat_id=CHAT, user_id=OPERATOR
    )
    done = api.wait_sent(
        lambda m: (
            m.get("message_id") == message["message_id"]
            and m["text"].startswith("Close the XRP/USD:USD position at market:\n")
        ),
        ANSWER_S,
    )
    assert done is not None
    assert "closing XRP/USD:USD" in done["text"], done["text"]
    assert api.wait_for(
        lambda: all(v["symbol"] != xrp for v in service.ops.positions()["positions"]),
        ANSWER_S,
    )
    state = service.venue()
    assert not [o for o in _working_entries(state) if o["symbol"] == "PF_XRPUSD"]
    assert not [p for a in state["accounts"] for p in a["positions"] if p["symbol"] == "PF_XRPUSD"]


def test_reload_applies_valid_limits_and_refuses_an_invalid_file(service: Service) -> None:
    ops = service.ops
    ops.env = dict(service.env)  # the environment the service started with
    assert service.ask("/reload") == "configuration reloaded: nothing changed"
    ops.env = {**service.env, "BASTION_RISK__RISK_PER_TRADE": "0.5"}  # above the 5% bound
    refused = service.ask("/reload")
    assert refused.startswith("reload refused, nothing changed"), refused
    assert "risk.risk_per_trade" in refused
    assert ops.settings.risk.risk_per_trade != 0.5
    ops.env = {**service.env, "BASTION_RISK__COOLDOWN_MINUTES": "5"}
    applied = service.ask("/reload")
    assert applied == "configuration reloaded; applied: risk", applied
    params = service.system.ask(RISK, lambda core: core.params)
    assert params.cooldown_minutes == 5.0


def test_flatten_closes_everything_and_latches(service: Service) -> None:
    """Last in this module: it leaves the account flat and the kill switch latched."""
    api = service.api
    _rest_entries(service)  # something to end, whatever the strategy holds right now
    message = _confirmation(service, "/flatten")
    api.press_button(
        message["message_id"], _buttons(message)["Confirm"], chat_id=CHAT, user_id=OPERATOR
    )
    done = api.wait_sent(
        lambda m: m.get("message_id") == message["message_id"] and "stops kept" in m["text"],
        60.0,
    )
    assert done is not None, api.sent(CHAT)[-3:]
    assert "the venue shows the account flat" in done["text"], done["text"]
    state = service.venue()
    assert [p for a in state["accounts"] for p in a["positions"]] == []
    assert _working_entries(state) == []
    assert _latched(service)
