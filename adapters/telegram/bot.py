"""The Telegram transport: operator commands in, alerts out (python-telegram-bot 22).

It runs in a thread of its own with its own event loop, so nothing it waits for (Telegram, a
slow command) touches the actors' threads; the trading side only ever puts alerts into an
:class:`~adapters.telegram.alerts.AlertQueue`, which never blocks. What a command does is not
decided here: ``execute(name, args, who) -> reply`` is given by the service (the control
layer, :meth:`actors.operations.Operations.execute`), and ``audit(code, who, payload)``
records each command and each stranger.

Commands (every one is audited with the sender's ids):

- reads: ``/status /positions /balance /pnl [days] /daily /stops /orders /health /logs [n]``;
- actions: ``/resume /pause <sym> /unpause <sym> /reload``;
- destructive, confirmed with an inline keyboard that expires after ``confirm_timeout_s``:
  ``/kill`` (latch, stops kept), ``/flatten`` (kill and close everything), ``/close <sym>``.
  Only the operator who asked can confirm.

Authorization: an update is served only if its chat is in ``allowed_chat_ids`` (when that list
is set) and its sender in ``allowed_user_ids`` (when that list is set). Anything else gets no
answer at all and is audited (``unauthorized``) with the chat and user ids.

Resilience: Telegram unreachable at start is retried with back-off; errors while polling
(network, 5xx, 429, "Conflict: terminated by other getUpdates request" when a second process
polls the same token) are logged and polling goes on. A rejected token stops the transport with
an error log; Bastion keeps trading. Alerts are paced per chat (``alert_min_interval_s``),
de-duplicated by kind and symbol within ``alert_dedup_window_s`` (repeats are counted into the
next message), retried on failure (``RetryAfter`` honoured) and dropped only after
``alert_give_up_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import (
    InvalidToken,
    TelegramError,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    TypeHandler,
)

from adapters.settings import TelegramSettings
from adapters.telegram.alerts import AlertQueue
from adapters.telegram.delivery import AlertDelivery, DeliveryStats

log = structlog.get_logger(__name__)
POLL_TIMEOUT_S = 10
UNAUTHORIZED_AUDIT_EVERY_S = 60.0
MAX_STRANGERS = 1000
ALERT_TICK_S = 0.2
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 60.0
MAX_TEXT = 4000  # Telegram's limit is 4096 characters
READS = ("status", "positions", "balance", "pnl", "daily", "stops", "orders", "health", "logs")
ACTIONS = ("resume", "pause", "unpause", "reload")
DESTRUCTIVE = ("kill", "flatten", "close")
NEEDS_SYMBOL = ("pause", "unpause", "close")
Execute = Callable[[str, list[str], str], str]  # (command, args, who) -> the reply
AuditFn = Callable[[str, str, dict[str, Any]], None]  # (code, who, payload)
HELP = """Bastion commands
/status /positions /balance /health
/pnl [days]  /daily  /stops  /orders  /logs [n]
/pause <sym>  /unpause <sym>  /resume  /reload
/kill  (entries cancelled, stops kept; asks to confirm)
/flatten  (kill and close every position; asks to confirm)
/close <sym>  (close one position; asks to confirm)"""


@dataclass
class _Pending:
    """A destructive command waiting for its confirmation."""

    command: str
    args: list[str]
    user_id: int
    chat_id: int
    expires_at: float


@dataclass
class TransportStats(DeliveryStats):
    """Counters for tests and status."""

    commands: int = 0
    unauthorized: int = 0
    polling_errors: list[str] = field(default_factory=list)


class TelegramControl(threading.Thread):
    """Polls the Bot API for commands and sends alerts, on its own thread and event loop."""

    def __init__(
        self,
        settings: TelegramSettings,
        execute: Execute,
        queue: AlertQueue,
        *,
        symbols: list[str],
        audit: AuditFn = lambda _code, _who, _payload: None,
    ) -> None:
        super().__init__(name="bastion-telegram", daemon=True)
        if settings.token is None:
            raise ValueError("Telegram needs telegram.token")
        self.settings = settings
        self.execute = execute
        self.queue = queue
        self.stats = TransportStats()
        self._audit = audit
        self._symbols = list(symbols)
        self._pending: dict[str, _Pending] = {}
        self._used: dict[str, None] = {}  # confirmation tokens already answered (double taps)
        self._strangers: dict[tuple[int | None, int | None], float] = {}
        self.delivery = AlertDelivery(queue, self.stats, lambda: self.settings)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._app: Application[Any, Any, Any, Any, Any, Any] | None = None
        self.ready = threading.Event()  # polling has started

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as err:  # never take Bastion down
            log.exception("telegram_failed", error=str(err))

    def stop(self, timeout_s: float = 10.0) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)
        self.join(timeout_s)

    def apply(self, settings: TelegramSettings) -> None:
        """New allow-lists and alert pacing from a reloaded configuration (the token stays)."""
        self.settings = self.settings.model_copy(
            update={
                k: getattr(settings, k)
                for k in (
                    "allowed_chat_ids",
                    "allowed_user_ids",
                    "confirm_timeout_s",
                    "alert_dedup_window_s",
                    "alert_min_interval_s",
                    "alert_give_up_s",
                )
            }
        )

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        alerts = asyncio.create_task(self._alerts_loop())
        app = None
        try:
            app = await self._connect()
            if app is None:
                return
            self._app = app
            self.ready.set()
            log.info("telegram_started", chats=self.delivery.chats())
            await self._stopping.wait()
        finally:
            alerts.cancel()  # one sender at a time: the final flush below
            with contextlib.suppress(asyncio.CancelledError):
                await alerts
            if app is not None:
                await _quietly(app.updater.stop() if app.updater else None)
                await _quietly(app.stop())
                await self.delivery.flush(app.bot, deadline_s=3.0)
                await _quietly(app.shutdown())
            log.info("telegram_stopped", **self._stats_fields())

    async def _connect(self) -> Application[Any, Any, Any, Any, Any, Any] | None:
        """Build, initialize and start polling, retrying with back-off while Telegram cannot be
        reached or answers with errors; None if the token is rejected or we are stopping."""
        assert self._stopping is not None
        delay = FIRST_RETRY_S
        while not self._stopping.is_set():
            app = self._build()
            try:
                await app.initialize()
                await app.start()
                assert app.updater is not None
                await app.updater.start_polling(
                    poll_interval=0.0,
                    timeout=POLL_TIMEOUT_S,
                    error_callback=self._polling_error,
                    allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY],
                )
            except InvalidToken:
                log.error("telegram_token_rejected")  # never the token itself
                await _quietly(app.shutdown())
                return None
            except TelegramError as err:
                log.warning("telegram_unreachable", error=str(err), retry_in_s=delay)
                await _quietly(app.updater.stop() if app.updater and app.updater.running else None)
                await _quietly(app.stop() if app.running else None)
                await _quietly(app.shutdown())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, MAX_RETRY_S)
                continue
            return app
        return None

    def _build(self) -> Application[Any, Any, Any, Any, Any, Any]:
        assert self.settings.token is not None
        app = (
            ApplicationBuilder()
            .token(self.settings.token.get_secret_value())
            .base_url(self.settings.api_base_url)
            .concurrent_updates(True)  # a slow read never delays a /kill confirmation
            .build()
        )
        app.add_handler(TypeHandler(Update, self._gate), group=-1)
        for name in (*READS, *ACTIONS, *DESTRUCTIVE, "help", "start"):
            app.add_handler(CommandHandler(name, self._command))
        app.add_handler(CallbackQueryHandler(self._button))
        app.add_error_handler(self._handler_error)
        return app

    def _polling_error(self, error: TelegramError) -> None:
        """Errors while fetching updates: logged, polling goes on (the library backs off)."""
        self.stats.polling_errors.append(type(error).__name__)
        del self.stats.polling_errors[:-50]
        if isinstance(error, InvalidToken):  # revoked while running: polling ends here
            log.error("telegram_token_rejected")
            return
        log.warning("telegram_polling_error", error=str(error), kind=type(error).__name__)

    async def _handler_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram_handler_error", error=str(context.error))

    # ------------------------------------------------------------------ commands

    def _allowed(self, chat_id: int | None, user_id: int | None) -> bool:
        chats, users = self.settings.allowed_chat_ids, self.settings.allowed_user_ids
        if chats and chat_id not in chats:
            return False
        return not (users and user_id not in users)

    async def _gate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat
        user = update.effective_user
        chat_id, user_id = (chat.id if chat else None), (user.id if user else None)
        if self._allowed(chat_id, user_id):
            return
        self.stats.unauthorized += 1
        now = time.monotonic()
        key = (chat_id, user_id)
        if now - self._strangers.get(key, -UNAUTHORIZED_AUDIT_EVERY_S) < UNAUTHORIZED_AUDIT_EVERY_S:
            raise ApplicationHandlerStop  # counted; one audit a minute per sender is enough
        self._strangers[key] = now
        if len(self._strangers) > MAX_STRANGERS:
            self._strangers.pop(next(iter(self._strangers)))
        message = update.effective_message
        text = (message.text or "") if message is not None else ""
        if update.callback_query is not None:
            text = f"button:{update.callback_query.data}"
        log.warning("telegram_unauthorized", chat_id=chat_id, user_id=user_id)
        self._audit(
            "unauthorized",
            f"telegram:{user_id}",
            {"chat_id": chat_id, "user_id": user_id, "text": text[:200]},
        )
        raise ApplicationHandlerStop

    async def _command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        user = update.effective_user
        chat = update.effective_chat
        if message is None or user is None or chat is None or not message.text:
            return
        name = message.text.split()[0].lstrip("/").split("@")[0].lower()
        args = list(context.args or [])
        who = f"telegram:{user.id}"
        self.stats.commands += 1
        self._audit(name, who, {"chat_id": chat.id, "user_id": user.id, "args": args})
        if name in ("help", "start"):
            await message.reply_text(HELP, do_quote=True)
            return
        if name in NEEDS_SYMBOL:
            symbol = self._symbol(args)
            if symbol is None:
                await message.reply_text(
                    f"usage: /{name} <symbol>; one of {self._symbols}", do_quote=True
                )
                return
            args = [symbol]
        if name in DESTRUCTIVE:
            await self._ask_confirmation(message, name, args, user.id, chat.id)
            return
        text = await asyncio.to_thread(self._execute, name, args, who)
        await message.reply_text(_fit(text, newest=name == "logs"), do_quote=True)

    def _symbol(self, args: list[str]) -> str | None:
        """The universe symbol ``args[0]`` names: exact, or by its base currency (``btc``)."""
        if not args:
            return None
        wanted = args[0].upper()
        exact = [s for s in self._symbols if s.upper() == wanted]
        by_base = [s for s in self._symbols if s.split("/")[0].upper() == wanted]
        found = exact or by_base
        return found[0] if len(found) == 1 else None

    def _execute(self, name: str, args: list[str], who: str) -> str:
        """Run one command (blocking: called off the event loop); never raises."""
        try:
            return self.execute(name, args, who)
        except Exception as err:  # the operator gets one line; the log has the rest
            log.exception("telegram_command_failed", command=name)
            return f"{name}: no answer ({type(err).__name__}); check /status"

    async def _ask_confirmation(
        self, message: Any, name: str, args: list[str], user_id: int, chat_id: int
    ) -> None:
        token = secrets.token_hex(6)
        ttl = self.settings.confirm_timeout_s
        pending = _Pending(name, args, user_id, chat_id, time.monotonic() + ttl)
        self._pending[token] = pending
        keyboard = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton("Confirm", callback_data=f"ok:{token}"),
                    InlineKeyboardButton("Cancel", callback_data=f"no:{token}"),
                ]
            ]
        )
        what = _describe(name, args)
        sent = await message.reply_text(
            f"{what}?\nConfirm within {ttl:g} s.", reply_markup=keyboard, do_quote=True
        )
        asyncio.get_running_loop().create_task(self._expire(token, ttl, sent))

    async def _expire(self, token: str, ttl: float, sent: Any) -> None:
        await asyncio.sleep(ttl)
        pending = self._pending.get(token)
        if pending is None:
            return
        self._forget(token)
        with contextlib.suppress(TelegramError):
            await sent.edit_text(
                f"{_describe(pending.command, pending.args)}: expired, nothing done"
            )

    async def _button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None or not query.data or ":" not in query.data:
            return
        choice, token = query.data.split(":", 1)
        pending = self._pending.get(token)
        if pending is None:  # answered already (a double tap) or unknown: the message stays
            await _quietly(query.answer("already answered" if token in self._used else "expired"))
            return
        if time.monotonic() > pending.expires_at:
            self._forget(token)
            await _quietly(query.answer("expired"))
            await _quietly(query.edit_message_text("expired, nothing done"))
            return
        if query.from_user.id != pending.user_id:
            await _quietly(query.answer("only the operator who asked can confirm"))
            return
        self._forget(token)
        who = f"telegram:{query.from_user.id}"
        what = _describe(pending.command, pending.args)
        confirmed = choice == "ok"
        self._audit(
            f"{pending.command}:{'confirmed' if confirmed else 'cancelled'}",
            who,
            {"chat_id": pending.chat_id, "args": pending.args},
        )
        if not confirmed:
            await _quietly(query.answer("cancelled"))
            await _quietly(query.edit_message_text(f"{what}: cancelled, nothing done"))
            return
        # the command runs whatever Telegram does with the acknowledgements around it
        await _quietly(query.answer("running"))
        running = asyncio.create_task(
            asyncio.to_thread(self._execute, pending.command, pending.args, who)
        )
        await _quietly(query.edit_message_text(f"{what}: running..."))
        text = await running
        await _quietly(query.edit_message_text(_fit(f"{what}:\n{text}")))

    def _forget(self, token: str) -> None:
        self._pending.pop(token, None)
        self._used[token] = None
        while len(self._used) > MAX_STRANGERS:
            self._used.pop(next(iter(self._used)))

    # ------------------------------------------------------------------ alerts

    async def _alerts_loop(self) -> None:
        while True:
            try:
                self.delivery.take()
                if self._app is not None and self.ready.is_set():
                    await self.delivery.send_due(self._app.bot)
                else:
                    self.delivery.give_up_old(time.monotonic())
            except Exception as err:  # alerting must outlive any one bad alert
                log.exception("telegram_alerts_error", error=str(err))
            await asyncio.sleep(ALERT_TICK_S)

    def _stats_fields(self) -> dict[str, Any]:
        s = self.stats
        return {
            "commands": s.commands,
            "unauthorized": s.unauthorized,
            "alerts_sent": s.alerts_sent,
            "alerts_collapsed": s.alerts_collapsed,
            "alerts_dropped": s.alerts_dropped,
        }


def _describe(name: str, args: list[str]) -> str:
    match name:
        case "kill":
            return "Kill switch: cancel working entries, keep every stop"
        case "flatten":
            return "FLATTEN: kill switch and close every position at market"
        case "close":
            return f"Close the {args[0]} position at market"
    return name


def _fit(text: str, *, newest: bool = False) -> str:
    """``text`` within one message; ``newest`` keeps the end (the latest log lines)."""
    if len(text) <= MAX_TEXT:
        return text
    return "...\n" + text[-MAX_TEXT:] if newest else text[:MAX_TEXT] + "\n..."


async def _quietly(awaitable: Any) -> None:
    """Await a Telegram call whose failure must not stop what follows (logged)."""
    if awaitable is None:
        return
    try:
        await awaitable
    except TelegramError as err:
        log.warning("telegram_call_failed", error=str(err))
    except RuntimeError as err:  # e.g. stopping something that is not running
        log.debug("telegram_call_skipped", error=str(err))


__all__ = ["HELP", "AuditFn", "Execute", "TelegramControl", "TransportStats"]
