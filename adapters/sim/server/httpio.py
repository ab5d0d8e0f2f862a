"""A minimal HTTP/1.1 reader and writer on asyncio streams (keep-alive, Content-Length bodies).

Enough for ``requests`` (ccxt sync), ``aiohttp`` (ccxt async) and ``urllib``: persistent
connections unless ``Connection: close`` or HTTP/1.0, bodies by ``Content-Length`` or chunked
transfer coding. The raw request head is kept so a WebSocket upgrade can be handed to the
``websockets`` sans-I/O protocol unchanged.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024


class BadRequest(Exception):
    pass


@dataclass(slots=True)
class HttpRequest:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes
    raw_head: bytes
    peer: str = ""
    path: str = field(init=False)
    query: str = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.target)
        self.path = parts.path
        self.query = parts.query

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def params(self) -> dict[str, str]:
        """Query parameters (last value wins); see :meth:`param_list` for repeated keys."""
        return dict(parse_qsl(self.query, keep_blank_values=True))

    def param_list(self, name: str) -> list[str]:
        return [v for k, v in parse_qsl(self.query, keep_blank_values=True) if k == name]

    @property
    def keep_alive(self) -> bool:
        connection = (self.header("connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    @property
    def is_websocket(self) -> bool:
        return (self.header("upgrade") or "").lower() == "websocket"

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object (empty when there is none); query params fill the gaps."""
        data: dict[str, Any] = dict(self.params)
        if self.body.strip():
            try:
                loaded = json.loads(self.body)
            except json.JSONDecodeError as exc:
                raise BadRequest(f"body is not JSON: {exc}") from exc
            if not isinstance(loaded, dict):
                raise BadRequest("body must be a JSON object")
            data.update(loaded)
        return data


async def read_request(reader: asyncio.StreamReader, peer: str) -> HttpRequest | None:
    """The next request on the connection, or ``None`` at a clean end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest("truncated request head") from exc
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError as exc:
        raise BadRequest(f"bad request line {lines[0]!r}") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(f"bad header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_BODY:
            raise BadRequest("body too large")
        body = await reader.readexactly(length)
    return HttpRequest(method.upper(), target, version, headers, body, head, peer)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


@dataclass(slots=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200) -> HttpResponse:
        return cls(status, json.dumps(data, separators=(",", ":")).encode())

    @classmethod
    def text(cls, text: str, status: int) -> HttpResponse:
        return cls(status, text.encode(), "text/plain; charset=utf-8")


def encode_response(response: HttpResponse, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    head = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Server: bastion-sim",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    head += [f"{k}: {v}" for k, v in response.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body
