"""A loopback fake of the Telegram Bot API, driven by the real python-telegram-bot client.

- :class:`FakeBotApi`: a ``ThreadingHTTPServer`` on 127.0.0.1 (port 0) answering
  ``/bot<token>/<method>`` like Telegram does. Point a client at it with
  ``telegram.Bot(token, base_url=api.base_url)`` or ``ApplicationBuilder().base_url(...)``:
  python-telegram-bot appends the token to a plain base URL and then ``/<method>``.
- the driver: :meth:`~FakeBotApi.send_text` and :meth:`~FakeBotApi.press_button` queue updates
  for ``getUpdates`` (long polling with offset, limit and timeout);
  :meth:`~FakeBotApi.sent`, :meth:`~FakeBotApi.edits`, :meth:`~FakeBotApi.answered` and
  :attr:`~FakeBotApi.calls` read back what the bot did; :meth:`~FakeBotApi.wait_for` and
  :meth:`~FakeBotApi.wait_sent` wait for it.
- faults: :meth:`~FakeBotApi.fail`, :meth:`~FakeBotApi.fail_always`,
  :meth:`~FakeBotApi.conflict` and :meth:`~FakeBotApi.clear_faults` answer the next calls of a
  method with an HTTP error and the Bot API error body (502/504 without a description: the HTML
  page of Telegram's nginx front end).

Request parameters are accepted as a query string, ``application/x-www-form-urlencoded`` (what
python-telegram-bot sends), ``multipart/form-data`` (what it sends with files) or JSON; values
are JSON-decoded except for free-text ones (``text``, ``data``, ...), so ``chat_id`` is an int and
``reply_markup`` a dict. Like Telegram, a second ``getUpdates`` ends a waiting one with 409.

Simplifications: ``parse_mode`` is not applied (the text comes back as sent, without entities);
a long poll waits at most ``MAX_LONG_POLL_S``; one ``message_id`` counter serves every chat; a
chat the bot was never written from is ``private`` for a positive id and ``group`` for a negative
one; only inline keyboards are echoed in messages (Telegram shows no other markup there).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

JsonDict = dict[str, Any]

MAX_LONG_POLL_S = 3.0  # a longer getUpdates timeout is cut to this (tests stay fast)
MAX_TEXT_LENGTH = 4096
MAX_CALLBACK_DATA_BYTES = 64
CONFLICT_DESCRIPTION = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
NOT_MODIFIED_DESCRIPTION = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
QUERY_INVALID_DESCRIPTION = (
    "Bad Request: query is too old and response timeout expired or query ID is invalid"
)
DEFAULT_DESCRIPTIONS: dict[int, str] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: CONFLICT_DESCRIPTION,
    429: "Too Many Requests: retry after {retry_after}",
    500: "Internal Server Error",
}
GATEWAY_STATUSES = frozenset({502, 504})
GATEWAY_PAGE = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
# parameters whose values are free text: never JSON-decoded ("123" stays a string)
TEXT_PARAMS = frozenset(
    {
        "text",
        "caption",
        "data",
        "parse_mode",
        "callback_query_id",
        "inline_message_id",
        "url",
        "description",
        "short_description",
        "name",
        "language_code",
        "secret_token",
        "business_connection_id",
        "message_effect_id",
    }
)
DEFAULT_UPDATE_TYPES = frozenset({"message", "edited_message", "callback_query"})


class ApiError(Exception):
    """A Bot API error answer: HTTP status, description and optional response parameters."""

    def __init__(self, status: int, description: str, parameters: JsonDict | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


@dataclass
class Fault:
    """An injected error for the next ``remaining`` calls of a method (``None``: every call)."""

    status: int
    remaining: int | None
    retry_after: int | None = None
    description: str | None = None


@dataclass(frozen=True)
class PollingInfo:
    """What the fake saw of the client's ``getUpdates`` loop.

    ``faulted`` counts error answers (injected faults and 409s for overlapping polls);
    ``calls_since_fault`` counts requests that arrived after the last of them, so
    ``recovered`` tells a test that the client came back after a fault.
    """

    calls: int
    ok: int
    faulted: int
    waiting: int
    calls_since_fault: int
    last_offset: int | None
    last_timeout: float | None
    allowed_updates: list[str] | None

    @property
    def recovered(self) -> bool:
        return self.faulted > 0 and self.calls_since_fault > 0


# --------------------------------------------------------------------------- request parsing


def decode_value(name: str, value: Any) -> Any:
    """A parameter as Telegram reads it: JSON-decoded unless it is free text or not JSON."""
    if name in TEXT_PARAMS or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def parse_body(content_type: str, body: bytes) -> JsonDict:
    """The raw parameters of a request body (form, multipart or JSON); files as dicts."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not body:
        return {}
    if media_type == "application/json":
        loaded = json.loads(body)
        if not isinstance(loaded, dict):
            raise ApiError(400, "Bad Request: the request body must be a JSON object")
        return loaded
    if media_type == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        fields: JsonDict = {}
        for part in message.walk():
            name = part.get_param("name", header="content-disposition")
            if part.is_multipart() or not isinstance(name, str):
                continue
            payload = part.get_payload(decode=True)
            content = payload if isinstance(payload, bytes) else b""
            filename = part.get_filename()
            fields[name] = (
                {"filename": filename, "content": content} if filename else content.decode()
            )
        return fields
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's entity offsets and lengths."""
    return len(text.encode("utf-16-le")) // 2


def callback_data_of(markup: Any) -> list[str]:
    """Every ``callback_data`` of an inline keyboard (none for other markup)."""
    if not isinstance(markup, dict):
        return []
    rows = markup.get("inline_keyboard") or []
    return [str(b["callback_data"]) for row in rows for b in row if "callback_data" in b]


# --------------------------------------------------------------------------- the server


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: FakeBotApi) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api = api


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._serve(self.rfile.read(length) if length else b"")

    def _serve(self, body: bytes) -> None:
        api = cast(_Server, self.server).api
        url = urlsplit(self.path)
        try:
            raw = dict(parse_qsl(url.query, keep_blank_values=True))
            raw.update(parse_body(self.headers.get("Content-Type", ""), body))
            status, content_type, payload = api.answer(url.path, raw)
        except (ApiError, ValueError, TypeError, KeyError, AttributeError) as exc:
            error = exc if isinstance(exc, ApiError) else ApiError(400, f"Bad Request: {exc}")
            status, content_type, payload = error_answer(error)
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the client gave up (a cancelled long poll): nobody to answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


def error_answer(error: ApiError) -> tuple[int, str, bytes]:
    """HTTP status, content type and body of a Bot API error."""
    body: JsonDict = {"ok": False, "error_code": error.status, "description": error.description}
    if error.parameters:
        body["parameters"] = error.parameters
    return error.status, "application/json", json.dumps(body).encode()


def fault_answer(fault: Fault) -> tuple[int, str, bytes]:
    """The answer of an injected fault: a gateway's HTML page or a Bot API error body."""
    if fault.status in GATEWAY_STATUSES and fault.description is None:
        phrase = "Bad Gateway" if fault.status == 502 else "Gateway Time-out"
        page = GATEWAY_PAGE.format(status=fault.status, phrase=phrase)
        return fault.status, "text/html", page.encode()
    retry_after = fault.retry_after
    if fault.status == 429 and retry_after is None:
        retry_after = 1  # Telegram always says how long to wait
    description = fault.description or DEFAULT_DESCRIPTIONS.get(fault.status, "Error").format(
        retry_after=retry_after
    )
    parameters = {"retry_after": retry_after} if retry_after is not None else None
    return error_answer(ApiError(fault.status, description, parameters))


# --------------------------------------------------------------------------- the fake


class FakeBotApi:
    """The fake Bot API of one bot (its token), its update queue, its record and its faults."""

    def __init__(self, token: str) -> None:
        self.token = token
        prefix = token.split(":", 1)[0]
        self.bot_user: JsonDict = {
            "id": int(prefix) if prefix.isdigit() else 1,
            "is_bot": True,
            "first_name": "Bastion Test Bot",
            "username": "bastion_test_bot",
        }
        self._cond = threading.Condition()  # guards everything below; an RLock underneath
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._updates: list[JsonDict] = []
        self._next_update_id = 1
        self._next_message_id = 1
        self._next_query_id = 1
        self._queries: set[str] = set()
        self._chats: dict[int, JsonDict] = {}
        self._messages: dict[tuple[int, int], JsonDict] = {}
        self._calls: list[tuple[str, JsonDict]] = []
        self._sent: list[JsonDict] = []
        self._edits: list[JsonDict] = []
        self._answered: list[JsonDict] = []
        self._outbox: list[JsonDict] = []  # sendMessage and editMessageText, in order
        self._commands: dict[tuple[str, str], list[JsonDict]] = {}
        self._faults: dict[str, list[Fault]] = {}
        self._unauthorized = 0
        self._poll_generation = 0
        self._poll = {"calls": 0, "ok": 0, "faulted": 0, "waiting": 0}
        self._last_fault_poll = 0  # the ordinal of the last getUpdates answered with an error
        self._last_offset: int | None = None
        self._last_timeout: float | None = None
        self._allowed_updates: list[str] | None = None
        self._methods: dict[str, Callable[[JsonDict], Any]] = {
            "getMe": lambda _: {
                **self.bot_user,
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            },
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": lambda _: {
                "url": "",
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            },
            "setMyCommands": self._set_my_commands,
            "getMyCommands": lambda p: self._commands.get(self._commands_key(p), []),
            "deleteMyCommands": self._delete_my_commands,
            "close": lambda _: True,
            "logOut": lambda _: True,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "answerCallbackQuery": self._answer_callback_query,
            "deleteMessage": self._delete_message,
        }
        self._canonical = {name.lower(): name for name in self._methods}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeBotApi:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-bot-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; waiting long polls return at once (empty)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeBotApi:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/bot``: the client appends ``<token>/<method>``."""
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/bot"

    # ------------------------------------------------------------------ the driver

    def send_text(
        self, text: str, *, chat_id: int, user_id: int, chat_type: str = "private"
    ) -> int:
        """Queue a message from a user in a chat (a ``/command`` gets its bot_command entity)."""
        with self._cond:
            user = self._user(user_id)
            if chat_type == "private":
                chat: JsonDict = {
                    "id": chat_id,
                    "type": "private",
                    "first_name": user["first_name"],
                }
            else:
                chat = {"id": chat_id, "type": chat_type, "title": f"Chat {chat_id}"}
            self._chats[chat_id] = chat
            message: JsonDict = {
                "message_id": self._take_message_id(),
                "date": int(time.time()),
                "chat": chat,
                "from": user,
                "text": text,
            }
            if text.startswith("/"):
                command = text.split(maxsplit=1)[0]
                message["entities"] = [
                    {"type": "bot_command", "offset": 0, "length": utf16_length(command)}
                ]
            return self._queue({"message": message})

    def press_button(self, message_id: int, data: str, *, chat_id: int, user_id: int) -> int:
        """Queue a callback query: a user pressed a button of the bot's message (as it is now).

        Raises ``KeyError`` for a message the bot did not send (or deleted) and ``ValueError``
        for data that no button of its current keyboard carries: Telegram allows neither.
        """
        with self._cond:
            message = self._messages.get((chat_id, message_id))
            if message is None:
                raise KeyError(f"the bot has no message {message_id} in chat {chat_id}")
            if data not in callback_data_of(message.get("reply_markup")):
                raise ValueError(f"message {message_id} has no button with data {data!r}")
            query_id = str(self._next_query_id)
            self._next_query_id += 1
            self._queries.add(query_id)
            query = {
                "id": query_id,
                "from": self._user(user_id),
                "chat_instance": str(chat_id),
                "data": data,
                "message": copy.deepcopy(message),
            }
            return self._queue({"callback_query": query})

    # ------------------------------------------------------------------ reading back

    @property
    def calls(self) -> list[tuple[str, JsonDict]]:
        """Every authorised request as (method, params), in order (faulted ones included)."""
        with self._cond:
            return copy.deepcopy(self._calls)

    def calls_of(self, method: str) -> list[JsonDict]:
        with self._cond:
            return [copy.deepcopy(p) for m, p in self._calls if m == method]

    def sent(self, chat_id: int | None = None) -> list[JsonDict]:
        """Params of the successful sendMessage calls, in order (of one chat if given), each
        with the ``message_id`` the server gave the message."""
        with self._cond:
            return [
                copy.deepcopy(p) for p in self._sent if chat_id is None or p["chat_id"] == chat_id
            ]

    def edits(self) -> list[JsonDict]:
        """Params of the successful editMessageText and editMessageReplyMarkup calls."""
        with self._cond:
            return copy.deepcopy(self._edits)

    def answered(self) -> list[JsonDict]:
        """Params of the successful answerCallbackQuery calls."""
        with self._cond:
            return copy.deepcopy(self._answered)

    def message(self, chat_id: int, message_id: int) -> JsonDict | None:
        """The bot's message as it is now (after edits), or ``None`` (never sent, or deleted)."""
        with self._cond:
            return copy.deepcopy(self._messages.get((chat_id, message_id)))

    @property
    def pending_updates(self) -> int:
        """Updates not yet confirmed by an offset."""
        with self._cond:
            return len(self._updates)

    @property
    def get_updates_calls(self) -> int:
        with self._cond:
            return self._poll["calls"]

    @property
    def unauthorized_calls(self) -> int:
        """Requests that carried another token (answered 401)."""
        with self._cond:
            return self._unauthorized

    @property
    def polling(self) -> PollingInfo:
        with self._cond:
            return PollingInfo(
                calls=self._poll["calls"],
                ok=self._poll["ok"],
                faulted=self._poll["faulted"],
                waiting=self._poll["waiting"],
                calls_since_fault=self._poll["calls"] - self._last_fault_poll,
                last_offset=self._last_offset,
                last_timeout=self._last_timeout,
                allowed_updates=copy.copy(self._allowed_updates),
            )

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``predicate()`` holds (re-checked after every request); its last value."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
            return True

    def wait_sent(self, predicate: Callable[[JsonDict], bool], timeout_s: float) -> JsonDict | None:
        """The first sendMessage or editMessageText params matching ``predicate``, or ``None``."""
        found: list[JsonDict] = []

        def match() -> bool:
            found[:] = [p for p in self._outbox if predicate(p)][:1]
            return bool(found)

        return copy.deepcopy(found[0]) if self.wait_for(match, timeout_s) else None

    # ------------------------------------------------------------------ faults

    def fail(
        self,
        method: str,
        status: int,
        *,
        times: int = 1,
        retry_after: int | None = None,
        description: str | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (``"*"``: any method) with an error.

        Faults of one method queue up in the order they were added; a 429 without
        ``retry_after`` says 1 second; 502 and 504 without a description answer with nginx's
        HTML page, with one as a JSON error.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        self._add_fault(method, Fault(status, times, retry_after, description))

    def fail_always(self, method: str, status: int) -> None:
        """Answer every call of ``method`` with an error until :meth:`clear_faults`."""
        self._add_fault(method, Fault(status, None))

    def conflict(self, times: int) -> None:
        """The next ``times`` getUpdates calls meet another bot instance (409)."""
        self.fail("getUpdates", 409, times=times, description=CONFLICT_DESCRIPTION)

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()

    def _add_fault(self, method: str, fault: Fault) -> None:
        with self._cond:
            self._faults.setdefault(method.lower(), []).append(fault)

    def _take_fault(self, method: str) -> Fault | None:
        for key in (method.lower(), "*"):
            faults = self._faults.get(key) or []
            if faults:
                fault = faults[0]
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        faults.pop(0)
                return fault
        return None

    # ------------------------------------------------------------------ serving

    def answer(self, path: str, raw: JsonDict) -> tuple[int, str, bytes]:
        """Status, content type and body for one request (called on the server's threads)."""
        token, _, name = path.removeprefix("/bot").partition("/")
        if not path.startswith("/bot") or not name or "/" in name:
            raise ApiError(404, "Not Found")
        if token != self.token:
            with self._cond:
                self._unauthorized += 1
            raise ApiError(401, "Unauthorized")
        method = self._canonical.get(name.lower(), name)
        params = {key: decode_value(key, value) for key, value in raw.items()}
        with self._cond:
            self._calls.append((method, copy.deepcopy(params)))
            fault = self._take_fault(method)
            ordinal = 0
            if method == "getUpdates":
                self._poll["calls"] += 1
                ordinal = self._poll["calls"]
            self._cond.notify_all()
        answer = fault_answer(fault) if fault is not None else self._call(method, params)
        if method == "getUpdates":
            with self._cond:
                if answer[0] == 200:
                    self._poll["ok"] += 1
                else:
                    self._poll["faulted"] += 1
                    self._last_fault_poll = max(self._last_fault_poll, ordinal)
                self._cond.notify_all()
        return answer

    def _call(self, method: str, params: JsonDict) -> tuple[int, str, bytes]:
        handler = self._methods.get(method)
        try:
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            with self._cond:
                result = handler(params)
                self._cond.notify_all()
        except ApiError as error:
            return error_answer(error)
        return 200, "application/json", json.dumps({"ok": True, "result": result}).encode()

    # the handlers below run with self._cond held

    def _get_updates(self, params: JsonDict) -> list[JsonDict]:
        offset = int(params.get("offset") or 0)
        limit = max(1, min(100, int(params.get("limit") or 100)))
        timeout = min(float(params.get("timeout") or 0), MAX_LONG_POLL_S)
        self._last_offset, self._last_timeout = offset, timeout
        if "allowed_updates" in params:
            self._allowed_updates = list(params["allowed_updates"] or []) or None
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        allowed = set(self._allowed_updates or DEFAULT_UPDATE_TYPES)
        self._poll_generation += 1  # a waiting earlier poll now ends with 409
        generation = self._poll_generation
        self._cond.notify_all()
        deadline = time.monotonic() + timeout
        self._poll["waiting"] += 1
        try:
            while True:
                self._updates = [u for u in self._updates if allowed & u.keys()]
                if self._updates or self._stopping:
                    return copy.deepcopy(self._updates[:limit])
                if generation != self._poll_generation:
                    raise ApiError(409, CONFLICT_DESCRIPTION)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
        finally:
            self._poll["waiting"] -= 1

    def _delete_webhook(self, params: JsonDict) -> bool:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    @staticmethod
    def _commands_key(params: JsonDict) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    def _set_my_commands(self, params: JsonDict) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or not all(
            isinstance(c, dict) and c.get("command") and c.get("description") for c in commands
        ):
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        self._commands[self._commands_key(params)] = commands
        return True

    def _delete_my_commands(self, params: JsonDict) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True

    def _send_message(self, params: JsonDict) -> JsonDict:
        chat_id = self._chat_id(params)
        text = self._text(params)
        markup = self._inline_markup(params)
        message: JsonDict = {
            "message_id": self._take_message_id(),
            "date": int(time.time()),
            "chat": self._chats.get(chat_id)
            or {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": self.bot_user,
            "text": text,
        }
        if markup is not None:
            message["reply_markup"] = markup
        self._messages[(chat_id, message["message_id"])] = message
        recorded = {**copy.deepcopy(params), "message_id": message["message_id"]}
        self._sent.append(recorded)
        self._outbox.append(copy.deepcopy(recorded))
        return copy.deepcopy(message)

    def _edit_message_text(self, params: JsonDict) -> JsonDict | bool:
        return self._edit(params, text=self._text(params))

    def _edit_message_reply_markup(self, params: JsonDict) -> JsonDict | bool:
        return self._edit(params, text=None)

    def _edit(self, params: JsonDict, *, text: str | None) -> JsonDict | bool:
        markup = self._inline_markup(params)
        if params.get("inline_message_id"):
            self._edits.append(copy.deepcopy(params))
            return True
        key = (self._chat_id(params), int(params.get("message_id") or 0))
        message = self._messages.get(key)
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        new_text = message["text"] if text is None else text
        if new_text == message["text"] and markup == message.get("reply_markup"):
            raise ApiError(400, NOT_MODIFIED_DESCRIPTION)
        message["text"] = new_text
        message["edit_date"] = int(time.time())
        if markup is None:
            message.pop("reply_markup", None)  # an edit without a keyboard removes it
        else:
            message["reply_markup"] = markup
        self._edits.append(copy.deepcopy(params))
        if text is not None:
            self._outbox.append(copy.deepcopy(params))
        return copy.deepcopy(message)

    def _answer_callback_query(self, params: JsonDict) -> bool:
        if str(params.get("callback_query_id")) not in self._queries:
            raise ApiError(400, QUERY_INVALID_DESCRIPTION)
        self._answered.append(copy.deepcopy(params))
        return True

    def _delete_message(self, params: JsonDict) -> bool:
        key = (self._chat_id(params), int(params.get("message_id") or 0))
        if self._messages.pop(key, None) is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        return True

    # ------------------------------------------------------------------ helpers

    def _queue(self, update: JsonDict) -> int:
        update_id = self._next_update_id
        self._next_update_id += 1
        self._updates.append({"update_id": update_id, **update})
        self._cond.notify_all()
        return update_id

    def _take_message_id(self) -> int:
        message_id = self._next_message_id
        self._next_message_id += 1
        return message_id

    @staticmethod
    def _user(user_id: int) -> JsonDict:
        return {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}

    @staticmethod
    def _chat_id(params: JsonDict) -> int:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        if not isinstance(chat_id, int) or isinstance(chat_id, bool):
            raise ApiError(400, "Bad Request: chat not found")
        return chat_id

    @staticmethod
    def _text(params: JsonDict) -> str:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            raise ApiError(400, "Bad Request: message is too long")
        return text

    @staticmethod
    def _inline_markup(params: JsonDict) -> JsonDict | None:
        markup = params.get("reply_markup")
        if not isinstance(markup, dict) or "inline_keyboard" not in markup:
            return None
        for row in markup["inline_keyboard"]:
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return markup
