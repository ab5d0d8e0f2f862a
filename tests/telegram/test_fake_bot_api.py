"""The fake Bot API (:mod:`tests.telegram.fake_bot_api`) against the real python-telegram-bot
client: ``telegram.Bot`` calls, the errors PTB raises for injected faults, and a whole
``telegram.ext.Application`` polling it from its own thread."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import httpx
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, MessageEntity, Update
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application, ApplicationBuilder, CommandHandler, ContextTypes

from tests.telegram.fake_bot_api import CONFLICT_DESCRIPTION, FakeBotApi

TOKEN = "123456:TEST-token"
CHAT = 4242
USER = 4242
KEYBOARD = InlineKeyboardMarkup(
    [
        [
            InlineKeyboardButton("Yes", callback_data="yes"),
            InlineKeyboardButton("No", callback_data="no"),
        ]
    ]
)
KEYBOARD_JSON = {
    "inline_keyboard": [
        [{"text": "Yes", "callback_data": "yes"}, {"text": "No", "callback_data": "no"}]
    ]
}


@pytest.fixture
def api() -> Iterator[FakeBotApi]:
    with FakeBotApi(TOKEN) as fake:
        yield fake


def with_bot(api: FakeBotApi, action: Callable[[Bot], Awaitable[Any]]) -> Any:
    """Run ``action`` with an initialised ``telegram.Bot`` pointed at the fake."""

    async def main() -> Any:
        async with Bot(TOKEN, base_url=api.base_url) as bot:
            return await action(bot)

    return asyncio.run(main())


def seconds(exc: RetryAfter) -> float:
    value = exc.retry_after  # an int or a timedelta, depending on PTB_TIMEDELTA
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


# --------------------------------------------------------------------------- plain calls


def test_base_url_and_get_me(api: FakeBotApi) -> None:
    bot = Bot(TOKEN, base_url=api.base_url)
    assert bot.base_url == f"{api.base_url}{TOKEN}"

    me = with_bot(api, lambda b: b.get_me())

    assert me.id == 123456
    assert me.is_bot
    assert me.username == "bastion_test_bot"
    assert [m for m, _ in api.calls] == ["getMe", "getMe"]  # initialize() and get_me()


def test_send_message_with_inline_keyboard(api: FakeBotApi) -> None:
    async def action(bot: Bot) -> Any:
        first = await bot.send_message(CHAT, "Close BTC?", reply_markup=KEYBOARD)
        second = await bot.send_message(CHAT, "123")
        return first, second

    first, second = with_bot(api, action)

    assert first.text == "Close BTC?"
    assert first.chat.id == CHAT
    assert first.from_user.id == 123456
    assert first.reply_markup == KEYBOARD
    assert second.message_id == first.message_id + 1
    assert second.reply_markup is None
    sent = api.sent(CHAT)
    assert [p["text"] for p in sent] == ["Close BTC?", "123"]  # free text is never decoded
    assert sent[0]["chat_id"] == CHAT
    assert sent[0]["reply_markup"] == KEYBOARD_JSON
    assert api.sent(CHAT + 1) == []
    assert api.message(CHAT, first.message_id)["reply_markup"] == KEYBOARD_JSON


def test_bot_api_validation_errors(api: FakeBotApi) -> None:
    async def action(bot: Bot) -> list[str]:
        errors = []
        for text, markup in [
            (" ", None),
            ("x" * 4097, None),
            ("hi", InlineKeyboardMarkup([[InlineKeyboardButton("b", callback_data="d" * 65)]])),
        ]:
            with pytest.raises(BadRequest) as caught:
                await bot.send_message(CHAT, text, reply_markup=markup)
            errors.append(caught.value.message)
        return errors

    assert with_bot(api, action) == [
        "Message text is empty",
        "Message is too long",
        "Button_data_invalid",
    ]
    assert api.sent() == []


def test_edit_and_delete(api: FakeBotApi) -> None:
    async def action(bot: Bot) -> None:
        message = await bot.send_message(CHAT, "Close BTC?", reply_markup=KEYBOARD)
        edited = await bot.edit_message_text("Closing BTC", CHAT, message.message_id)
        assert edited.text == "Closing BTC"
        assert edited.reply_markup is None  # an edit without a keyboard removes it
        assert edited.edit_date is not None
        with pytest.raises(BadRequest, match="not modified"):
            await bot.edit_message_text("Closing BTC", CHAT, message.message_id)
        await bot.edit_message_reply_markup(CHAT, message.message_id, reply_markup=KEYBOARD)
        assert await bot.delete_message(CHAT, message.message_id)
        with pytest.raises(BadRequest, match="not found"):
            await bot.edit_message_text("gone", CHAT, message.message_id)

    with_bot(api, action)

    edits = api.edits()
    assert [e.get("text") for e in edits] == ["Closing BTC", None]
    assert edits[1]["reply_markup"] == KEYBOARD_JSON
    assert api.wait_sent(lambda p: p.get("text") == "Closing BTC", 0.1) == edits[0]


def test_commands_and_webhook_methods(api: FakeBotApi) -> None:
    async def action(bot: Bot) -> Any:
        assert await bot.set_my_commands([("status", "Positions"), ("kill", "Stop trading")])
        commands = await bot.get_my_commands()
        assert await bot.delete_my_commands()
        info = await bot.get_webhook_info()
        assert await bot.delete_webhook(drop_pending_updates=True)
        return commands, info, await bot.get_my_commands()

    api.send_text("hello", chat_id=CHAT, user_id=USER)
    commands, info, after = with_bot(api, action)

    assert [(c.command, c.description) for c in commands] == [
        ("status", "Positions"),
        ("kill", "Stop trading"),
    ]
    assert after == ()
    assert info.url == ""
    assert info.pending_update_count == 1
    assert api.pending_updates == 0  # dropped by deleteWebhook


# --------------------------------------------------------------------------- updates


def test_command_update_is_parsed(api: FakeBotApi) -> None:
    update_id = api.send_text("/status BTC", chat_id=CHAT, user_id=USER)
    group_id = api.send_text("/ping@bastion_test_bot", chat_id=-100, user_id=7, chat_type="group")

    updates = with_bot(api, lambda b: b.get_updates())

    assert [u.update_id for u in updates] == [update_id, group_id]
    first, second = updates
    assert first.message.text == "/status BTC"
    assert first.effective_user.id == USER
    assert first.effective_chat.type == "private"
    assert first.message.entities == (MessageEntity(MessageEntity.BOT_COMMAND, 0, 7),)
    assert first.message.parse_entity(first.message.entities[0]) == "/status"
    assert second.effective_chat.type == "group"
    assert second.effective_user.id == 7
    assert second.message.entities[0].length == len("/ping@bastion_test_bot")


def test_callback_query_update_is_parsed(api: FakeBotApi) -> None:
    message = with_bot(api, lambda b: b.send_message(CHAT, "Close BTC?", reply_markup=KEYBOARD))
    api.press_button(message.message_id, "yes", chat_id=CHAT, user_id=USER)
    with pytest.raises(ValueError, match="no button"):
        api.press_button(message.message_id, "maybe", chat_id=CHAT, user_id=USER)
    with pytest.raises(KeyError):
        api.press_button(message.message_id + 50, "yes", chat_id=CHAT, user_id=USER)

    async def action(bot: Bot) -> Update:
        (update,) = await bot.get_updates()
        assert await update.callback_query.answer("Closing")
        with pytest.raises(BadRequest, match="query id is invalid"):
            await bot.answer_callback_query("no-such-query")
        return update

    update = with_bot(api, action)

    query = update.callback_query
    assert query.data == "yes"
    assert query.from_user.id == USER
    assert query.message.message_id == message.message_id
    assert query.message.reply_markup == KEYBOARD
    assert query.message.from_user.id == 123456
    assert api.answered() == [{"callback_query_id": query.id, "text": "Closing"}]


def test_offset_confirms_and_limit_caps(api: FakeBotApi) -> None:
    ids = [api.send_text(f"m{n}", chat_id=CHAT, user_id=USER) for n in range(3)]

    async def action(bot: Bot) -> list[list[int]]:
        batches = [
            await bot.get_updates(limit=2),
            await bot.get_updates(offset=ids[1]),  # confirms ids[0]
            await bot.get_updates(offset=-1),  # keeps only the last one
            await bot.get_updates(offset=ids[2] + 1, timeout=0),
        ]
        return [[u.update_id for u in batch] for batch in batches]

    assert with_bot(api, action) == [ids[:2], ids[1:], ids[2:], []]
    assert api.pending_updates == 0
    assert api.get_updates_calls == 4
    assert api.polling.last_offset == ids[2] + 1


def test_long_poll_times_out_empty(api: FakeBotApi) -> None:
    started = time.monotonic()
    updates = with_bot(api, lambda b: b.get_updates(timeout=1))
    elapsed = time.monotonic() - started

    assert updates == ()
    assert 0.9 <= elapsed < 2.0
    assert api.polling.last_timeout == 1


def test_long_poll_returns_when_an_update_arrives(api: FakeBotApi) -> None:
    threading.Timer(0.3, lambda: api.send_text("hi", chat_id=CHAT, user_id=USER)).start()
    started = time.monotonic()
    updates = with_bot(api, lambda b: b.get_updates(timeout=3))

    assert [u.message.text for u in updates] == ["hi"]
    assert time.monotonic() - started < 1.5


def test_stop_releases_a_waiting_long_poll() -> None:
    api = FakeBotApi(TOKEN).start()
    url = f"{api.base_url}{TOKEN}/getUpdates?timeout=3"
    answers: list[Any] = []
    poller = threading.Thread(
        target=lambda: answers.append(json.loads(urllib.request.urlopen(url, timeout=5).read()))
    )
    poller.start()
    assert api.wait_for(lambda: api.polling.waiting == 1, 2)

    started = time.monotonic()
    api.stop()
    poller.join(3)

    assert time.monotonic() - started < 1.0
    assert answers == [{"ok": True, "result": []}]


def test_a_second_poll_ends_the_waiting_one_with_409(api: FakeBotApi) -> None:
    """Two bot instances (one Bot's getUpdates pool holds a single connection)."""

    async def main() -> Any:
        async with (
            Bot(TOKEN, base_url=api.base_url) as one,
            Bot(TOKEN, base_url=api.base_url) as two,
        ):
            first = asyncio.create_task(one.get_updates(timeout=3))
            await asyncio.sleep(0.3)
            second = await two.get_updates(timeout=0)
            with pytest.raises(Conflict, match="terminated by other getUpdates request"):
                await first
            return second

    assert asyncio.run(main()) == ()
    polling = api.polling
    assert (polling.calls, polling.ok, polling.faulted) == (2, 1, 1)
    assert polling.calls_since_fault == 1  # the second poll came after the first


# --------------------------------------------------------------------------- faults


@pytest.mark.filterwarnings("ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning")
def test_429_raises_retry_after(api: FakeBotApi) -> None:
    api.fail("sendMessage", 429, retry_after=7)

    async def action(bot: Bot) -> None:
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(CHAT, "first")
        assert seconds(caught.value) == 7
        await bot.send_message(CHAT, "second")

    with_bot(api, action)

    assert [p["text"] for p in api.calls_of("sendMessage")] == ["first", "second"]
    assert [p["text"] for p in api.sent()] == ["second"]


def test_409_raises_conflict_then_polling_recovers(api: FakeBotApi) -> None:
    api.conflict(2)

    async def action(bot: Bot) -> None:
        for _ in range(2):
            with pytest.raises(Conflict) as caught:
                await bot.get_updates()
            assert caught.value.message == CONFLICT_DESCRIPTION
        assert not api.polling.recovered
        assert await bot.get_updates() == ()

    with_bot(api, action)

    polling = api.polling
    assert (polling.calls, polling.faulted, polling.ok) == (3, 2, 1)
    assert polling.recovered


def test_502_is_a_network_error(api: FakeBotApi) -> None:
    api.fail("getUpdates", 502)
    api.fail("sendMessage", 502, description="Bad Gateway")

    async def action(bot: Bot) -> None:
        with pytest.raises(NetworkError) as caught:
            await bot.get_updates()
        assert "Bad Gateway (502)" in caught.value.message  # the HTML page did not parse
        assert isinstance(caught.value.__cause__, TelegramError)
        with pytest.raises(NetworkError, match=r"^Bad Gateway$"):
            await bot.send_message(CHAT, "x")

    with_bot(api, action)


def test_other_statuses_map_to_ptb_errors(api: FakeBotApi) -> None:
    api.fail("sendMessage", 403)
    api.fail("sendMessage", 400, description="Bad Request: chat not found")
    api.fail("sendMessage", 500)
    api.fail_always("getMyCommands", 500)

    async def action(bot: Bot) -> None:
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(CHAT, "x")
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(CHAT, "x")
        with pytest.raises(NetworkError, match="Internal Server Error"):
            await bot.send_message(CHAT, "x")
        await bot.send_message(CHAT, "x")
        for _ in range(3):
            with pytest.raises(NetworkError):
                await bot.get_my_commands()
        api.clear_faults()
        assert await bot.get_my_commands() == ()

    with_bot(api, action)


def test_wrong_token_and_unknown_method(api: FakeBotApi) -> None:
    async def wrong_token() -> None:
        async with Bot("999:wrong", base_url=api.base_url):
            pass

    with pytest.raises(InvalidToken, match="was rejected by the server"):
        asyncio.run(wrong_token())
    assert api.unauthorized_calls == 1
    assert api.calls == []

    with pytest.raises(EndPointNotFound):
        with_bot(api, lambda b: b.do_api_request("send_teleport", api_kwargs={"chat_id": CHAT}))
    assert api.calls_of("sendTeleport") == [{"chat_id": CHAT}]


def test_json_multipart_and_query_encodings(api: FakeBotApi) -> None:
    url = f"{api.base_url}{TOKEN}/sendMessage"
    body = json.dumps({"chat_id": CHAT, "text": "json", "reply_markup": KEYBOARD_JSON}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read())["result"]["reply_markup"] == KEYBOARD_JSON
    multipart = httpx.post(
        url,
        data={"chat_id": str(CHAT), "text": "multi", "reply_markup": json.dumps(KEYBOARD_JSON)},
        files={"thumbnail": ("t.jpg", b"\xff\xd8", "image/jpeg")},
    )
    assert multipart.json()["ok"]
    query = httpx.get(url, params={"chat_id": CHAT, "text": "7", "disable_notification": "true"})
    assert query.json()["result"]["text"] == "7"

    sent = api.sent()
    assert [p["text"] for p in sent] == ["json", "multi", "7"]
    assert sent[0]["reply_markup"] == sent[1]["reply_markup"] == KEYBOARD_JSON
    assert sent[1]["thumbnail"] == {"filename": "t.jpg", "content": b"\xff\xd8"}
    assert sent[2]["chat_id"] == CHAT
    assert sent[2]["disable_notification"] is True


# --------------------------------------------------------------------------- an Application


class AppThread:
    """A ``telegram.ext.Application`` polling the fake from its own thread and event loop."""

    def __init__(self, api: FakeBotApi) -> None:
        self.app: Application = ApplicationBuilder().token(TOKEN).base_url(api.base_url).build()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self) -> None:
        self.thread.start()

        async def startup() -> None:
            await self.app.initialize()
            await self.app.start()
            assert self.app.updater is not None
            await self.app.updater.start_polling(poll_interval=0.0, timeout=1)

        self.run(startup())

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self.app.updater is not None
            await self.app.updater.stop()
            await self.app.stop()
            await self.app.shutdown()

        try:
            self.run(shutdown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


@pytest.fixture
def app(api: FakeBotApi) -> Iterator[AppThread]:
    async def ping(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("pong")

    running = AppThread(api)
    running.app.add_handler(CommandHandler("ping", ping))
    running.start()
    yield running
    running.stop()


def test_application_answers_ping(api: FakeBotApi, app: AppThread) -> None:
    api.send_text("/ping", chat_id=CHAT, user_id=USER)

    reply = api.wait_sent(lambda p: p["chat_id"] == CHAT, 5)

    assert reply is not None
    assert reply["text"] == "pong"
    assert api.calls_of("deleteWebhook")  # the updater's bootstrap
    assert api.wait_for(lambda: api.pending_updates == 0, 3)  # confirmed by the next offset


def test_application_polls_on_after_a_conflict(api: FakeBotApi, app: AppThread) -> None:
    api.conflict(1)
    assert api.wait_for(lambda: api.polling.recovered, 5)

    api.send_text("/ping", chat_id=CHAT, user_id=USER)

    assert api.wait_sent(lambda p: p["text"] == "pong", 5) is not None
    assert api.polling.faulted == 1
