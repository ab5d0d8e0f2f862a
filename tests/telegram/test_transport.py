"""The Telegram transport on its own, against the fake Bot API: start-up failures, the
confirmation flow's edge cases, alert grouping and stranger floods.

The control layer is replaced by a recorder (what the transport does with Telegram is the subject
here; the end-to-end tests drive the real service).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from actors.alerting import AlertRelay
from actors.messages import Alert, KillSwitchChanged, Severity
from adapters.settings import TelegramSettings
from adapters.telegram.bot import TelegramControl
from tests.telegram.fake_bot_api import FakeBotApi

TOKEN = "515151:transport-test-token"
CHAT, OPERATOR, STRANGER = 100, 7, 999
WAIT_S = 15.0


class Recorder:
    """Stands in for the control layer: records the commands it is given, answers briefly."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], str]] = []

    def execute(self, name: str, args: list[str], who: str) -> str:
        self.calls.append((name, args, who))
        return f"kill switch latched ({who})\nstops kept: 0" if name == "kill" else name


@pytest.fixture
def api() -> Iterator[FakeBotApi]:
    with FakeBotApi(TOKEN) as fake:
        yield fake


@dataclass
class Started:
    bot: TelegramControl
    ops: Recorder
    audits: list[str]
    relay: AlertRelay  # the trading side's end of the alert queue


def _start(api: FakeBotApi, **settings: Any) -> Started:
    audits: list[str] = []
    ops = Recorder()
    config = TelegramSettings(
        token=TOKEN,
        allowed_chat_ids=[CHAT],
        api_base_url=api.base_url,
        alert_min_interval_s=0,
        **settings,
    )
    relay = AlertRelay()
    bot = TelegramControl(
        config,
        ops.execute,
        relay.queue,
        symbols=["BTC/USD:USD"],
        audit=lambda code, _who, _payload: audits.append(code),
    )
    bot.start()
    return Started(bot, ops, audits, relay)


def _texts(api: FakeBotApi) -> list[str]:
    return [m["text"] for m in api.sent(CHAT)]


def test_a_failing_start_is_retried_until_polling_runs(api: FakeBotApi) -> None:
    api.fail("deleteWebhook", 502, times=2)  # the call right after getMe, on each attempt
    started = _start(api)
    bot, _ops, _ = started.bot, started.ops, started.audits
    try:
        assert bot.ready.wait(WAIT_S), "polling never started"
        api.send_text("/help", chat_id=CHAT, user_id=OPERATOR)
        assert api.wait_sent(lambda m: "Bastion commands" in m["text"], WAIT_S)
    finally:
        bot.stop()
    assert not bot.is_alive()


def _confirm_kill(api: FakeBotApi) -> dict[str, Any]:
    api.send_text("/kill", chat_id=CHAT, user_id=OPERATOR)
    asked = api.wait_sent(lambda m: "Confirm within" in m["text"], WAIT_S)
    assert asked is not None
    return asked


def _confirm_data(message: dict[str, Any]) -> str:
    return str(message["reply_markup"]["inline_keyboard"][0][0]["callback_data"])


def test_a_confirmed_kill_runs_even_if_telegram_fails_around_it(api: FakeBotApi) -> None:
    started = _start(api)
    bot, ops, audits = started.bot, started.ops, started.audits
    try:
        assert bot.ready.wait(WAIT_S)
        asked = _confirm_kill(api)
        api.fail("answerCallbackQuery", 502)
        api.fail("editMessageText", 502)  # the "running..." edit
        api.press_button(asked["message_id"], _confirm_data(asked), chat_id=CHAT, user_id=OPERATOR)
        assert api.wait_for(lambda: [c for c, _args, _who in ops.calls] == ["kill"], WAIT_S)
        done = api.wait_sent(lambda m: "stops kept" in m["text"], WAIT_S)
        assert done is not None and done["message_id"] == asked["message_id"]
        assert audits == ["kill", "kill:confirmed"]
    finally:
        bot.stop()


def test_a_double_tap_runs_once_and_keeps_the_result(api: FakeBotApi) -> None:
    started = _start(api)
    bot, ops, _ = started.bot, started.ops, started.audits
    try:
        assert bot.ready.wait(WAIT_S)
        asked = _confirm_kill(api)
        data = _confirm_data(asked)
        api.press_button(asked["message_id"], data, chat_id=CHAT, user_id=OPERATOR)
        api.press_button(asked["message_id"], data, chat_id=CHAT, user_id=OPERATOR)
        assert api.wait_sent(lambda m: "stops kept" in m["text"], WAIT_S)
        assert api.wait_for(
            lambda: any(a.get("text") == "already answered" for a in api.answered()), WAIT_S
        )
        time.sleep(0.5)
        assert [c for c, _args, _who in ops.calls] == ["kill"]
        message = api.message(CHAT, asked["message_id"])
        assert message is not None and "stops kept" in message["text"]  # not "expired"
    finally:
        bot.stop()


def test_state_changes_are_always_announced_and_storms_collapsed(api: FakeBotApi) -> None:
    started = _start(api, alert_dedup_window_s=300)
    bot, _ops, _ = started.bot, started.ops, started.audits
    try:
        assert bot.ready.wait(WAIT_S)
        relay = started.relay
        relay.tell(KillSwitchChanged(True, "operator", 1))
        relay.tell(KillSwitchChanged(False, "resumed", 2))
        relay.tell(KillSwitchChanged(True, "daily loss limit", 3))
        for i in range(4):  # a storm: the same rung again and again
            relay.tell(Alert("ladder_retry", Severity.WARNING, "BTC/USD:USD", f"retry {i}", i))
        relay.tell(Alert("ladder_reset", Severity.INFO, "BTC/USD:USD", "protected again", 9))
        relay.tell(Alert("ladder_retry", Severity.WARNING, "BTC/USD:USD", "retry 5", 10))
        assert api.wait_for(lambda: "WARNING: retry 5" in _texts(api), WAIT_S)
    finally:
        bot.stop()
    texts = [t for t in _texts(api) if not t.startswith("Bastion")]
    assert texts == [
        "KILL SWITCH ON: operator",
        "kill switch off (resumed)",
        "KILL SWITCH ON: daily loss limit",
        "WARNING: retry 0",
        "INFO: protected again",
        "WARNING: retry 5",  # a new episode after the reset: announced
    ]
    assert bot.stats.alerts_collapsed == 3


def test_a_stranger_flood_is_audited_once_a_minute(api: FakeBotApi) -> None:
    started = _start(api)
    bot, ops, audits = started.bot, started.ops, started.audits
    try:
        assert bot.ready.wait(WAIT_S)
        for _ in range(5):
            api.send_text("/status", chat_id=STRANGER, user_id=STRANGER)
        assert api.wait_for(lambda: bot.stats.unauthorized == 5, WAIT_S)
    finally:
        bot.stop()
    assert audits == ["unauthorized"]
    assert ops.calls == [] and api.sent(STRANGER) == []


def test_a_rejected_token_turns_telegram_off_without_raising(api: FakeBotApi) -> None:
    config = TelegramSettings(token="1:wrong", allowed_chat_ids=[CHAT], api_base_url=api.base_url)
    bot = TelegramControl(config, Recorder().execute, AlertRelay().queue, symbols=["BTC/USD:USD"])
    bot.start()
    bot.join(WAIT_S)
    assert not bot.is_alive() and not bot.ready.is_set()
