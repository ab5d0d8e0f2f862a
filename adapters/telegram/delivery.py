"""Alert delivery to the operators' chats: grouping, pacing, retries (the transport's outbox).

Runs on the Telegram transport's event loop (:mod:`adapters.telegram.bot`), fed from the
:class:`~adapters.telegram.alerts.AlertQueue` the trading side fills.

- Chats: ``allowed_chat_ids``, else the allowed users' private chats.
- Grouping: an alert with a key is collapsed while the same alert about the same subject was
  the last one sent to that chat within ``alert_dedup_window_s``; it is counted into the next
  one that goes out. Any other alert about the subject ends the collapsing, so a change of
  state (a kill switch off and on again, a stop missing again after it was restored) is always
  announced. Alerts without a key (critical ones, the kill switch, trades) are never collapsed.
- Pacing: at least ``alert_min_interval_s`` between two messages to one chat, in order.
- Failures: ``RetryAfter`` is honoured; other errors back off from 1 s doubling to 60 s; a chat
  that refuses the bot (blocked, bad request) drops the alert. An alert not sent within
  ``alert_give_up_s``, or the oldest beyond :data:`MAX_OUTBOX`, is dropped and counted (it is
  in the log regardless).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from telegram import Bot
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

from adapters.settings import TelegramSettings
from adapters.telegram.alerts import AlertQueue, AlertText

log = structlog.get_logger(__name__)
MAX_OUTBOX = 500
MAX_SUBJECTS = 1000
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 60.0
MAX_TEXT = 4000  # Telegram's limit is 4096 characters
FLUSH_TICK_S = 0.2


@dataclass
class DeliveryStats:
    """Alert counters (the transport's stats extend these)."""

    alerts_sent: int = 0
    alerts_collapsed: int = 0
    alerts_dropped: int = 0
    send_failures: int = 0


@dataclass
class _Outgoing:
    chat_id: int
    text: str
    first_at: float
    attempts: int = 0


class AlertDelivery:
    """The queue of alert messages per chat (see the module docstring)."""

    def __init__(
        self,
        queue: AlertQueue,
        stats: DeliveryStats,
        settings: Callable[[], TelegramSettings],
    ) -> None:
        self.queue = queue
        self.stats = stats
        self._settings = settings  # read each time: a reload may change the lists and pacing
        self._outbox: deque[_Outgoing] = deque()
        self._next_send: dict[int, float] = {}
        self._last_key: dict[tuple[int, str], tuple[str, float]] = {}  # (chat, subject)
        self._collapsed: dict[tuple[int, str], int] = {}

    @property
    def queued(self) -> int:
        return len(self._outbox)

    def chats(self) -> list[int]:
        settings = self._settings()
        return list(settings.allowed_chat_ids or settings.allowed_user_ids)

    def take(self) -> None:
        """Move what the queue holds into the outbox, grouped."""
        now = time.monotonic()
        for alert in self.queue.drain():
            self.enqueue(alert, now)
        dropped = self.queue.take_dropped()
        if dropped:
            self.stats.alerts_dropped += dropped
            log.warning("telegram_alerts_dropped", count=dropped, reason="queue full")

    def enqueue(self, alert: AlertText, now: float) -> None:
        window = self._settings().alert_dedup_window_s
        for chat_id in self.chats():
            text = alert.text
            subject = (chat_id, alert.subject)
            if alert.key is None:
                self._last_key.pop(subject, None)
            else:
                last = self._last_key.get(subject)
                same = last is not None and last[0] == alert.key
                if same and last is not None and now - last[1] < window:
                    self._collapsed[subject] = self._collapsed.get(subject, 0) + 1
                    self.stats.alerts_collapsed += 1
                    continue
                repeats = self._collapsed.pop(subject, 0) if same else 0
                self._last_key[subject] = (alert.key, now)
                if repeats:
                    text += f" (and {repeats} similar before)"
            if len(self._last_key) > MAX_SUBJECTS:
                self._last_key.pop(next(iter(self._last_key)))
            self._outbox.append(_Outgoing(chat_id, text[:MAX_TEXT], now))

    def give_up_old(self, now: float) -> None:
        """Drop alerts older than ``alert_give_up_s``, and the oldest beyond ``MAX_OUTBOX``."""
        limit = self._settings().alert_give_up_s
        kept = deque(item for item in self._outbox if now - item.first_at <= limit)
        dropped = len(self._outbox) - len(kept)
        while len(kept) > MAX_OUTBOX:
            kept.popleft()
            dropped += 1
        if dropped:
            self.stats.alerts_dropped += dropped
            log.error("telegram_alerts_dropped", count=dropped, reason="not sent in time")
        self._outbox = kept

    async def send_due(self, bot: Bot) -> None:
        """Send what each chat's pacing allows now; failures stay queued for a retry."""
        now = time.monotonic()
        self.give_up_old(now)
        kept: deque[_Outgoing] = deque()
        busy: set[int] = set()
        while self._outbox:
            item = self._outbox.popleft()
            if item.chat_id in busy or now < self._next_send.get(item.chat_id, 0.0):
                busy.add(item.chat_id)  # keep each chat's order
                kept.append(item)
                continue
            busy.add(item.chat_id)
            if not await self._send(bot, item):
                kept.append(item)
        self._outbox = kept + self._outbox  # anything queued meanwhile goes after

    async def flush(self, bot: Bot, deadline_s: float) -> None:
        """On shutdown: send what can still go within ``deadline_s``."""
        end = time.monotonic() + deadline_s
        self.take()
        while self._outbox and time.monotonic() < end:
            await self.send_due(bot)
            await asyncio.sleep(FLUSH_TICK_S)

    async def _send(self, bot: Bot, item: _Outgoing) -> bool:
        try:
            await bot.send_message(item.chat_id, item.text)
        except RetryAfter as err:
            wait = _seconds(err.retry_after)
            self._next_send[item.chat_id] = time.monotonic() + wait
            self.stats.send_failures += 1
            log.warning("telegram_rate_limited", chat_id=item.chat_id, retry_after_s=wait)
            return False
        except (Forbidden, BadRequest) as err:  # this chat will not take it: do not retry
            self.stats.alerts_dropped += 1
            log.error("telegram_alert_refused", chat_id=item.chat_id, error=str(err))
            return True
        except TelegramError as err:
            item.attempts += 1
            wait = min(FIRST_RETRY_S * 2**item.attempts, MAX_RETRY_S)
            self._next_send[item.chat_id] = time.monotonic() + wait
            self.stats.send_failures += 1
            log.warning(
                "telegram_send_failed", chat_id=item.chat_id, error=str(err), retry_in_s=wait
            )
            return False
        self.stats.alerts_sent += 1
        interval = self._settings().alert_min_interval_s
        self._next_send[item.chat_id] = time.monotonic() + interval
        return True


def _seconds(value: Any) -> float:
    seconds = getattr(value, "total_seconds", None)
    return float(seconds() if callable(seconds) else value)


__all__ = ["MAX_OUTBOX", "AlertDelivery", "DeliveryStats"]
