"""Logging: structlog and stdlib records as JSON lines in a file plus a readable console.

Both structlog loggers and stdlib loggers (ccxt, pykka, telegram, httpx, ...) go through the same
processors, so every line in ``<log_dir>/bastion.jsonl`` carries ``timestamp`` (ISO 8601, UTC),
``level``, ``event`` and ``logger``. The file is written by a ``WatchedFileHandler``: after
logrotate renames it, the next record opens a fresh file.

Exceptions are rendered as structured dicts without local variables. The redaction processor runs
last before rendering, on the file and on the console, so it also covers rendered tracebacks and
stdlib records.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

LOG_FILE_NAME = "bastion.jsonl"
REDACTED = "***"

# Secrets shorter than this are not matched inside strings: a 1-3 character "secret" would
# redact unrelated text all over the log. Key-name redaction still applies to them.
MIN_SECRET_LENGTH = 4

# Keys whose values are always replaced, whatever they contain (case-insensitive).
_SENSITIVE_KEY_RE = re.compile(r"secret|token|key|password|^authent", re.IGNORECASE)

# Keys structlog and the stdlib bridge use themselves; never masked by name.
_STRUCTURAL_KEYS = frozenset(
    {
        "event",
        "level",
        "timestamp",
        "logger",
        "logger_name",
        "exception",
        "stack",
        "exc_info",
        "stack_info",
        "_record",
        "_from_structlog",
    }
)

# Keys holding objects later processors need intact (rendered before redaction in our chains).
_PASSTHROUGH_KEYS = frozenset({"exc_info", "_record", "_from_structlog"})

# Handlers installed by configure_logging, removed on the next call or by reset_logging.
_installed_handlers: list[logging.Handler] = []
_previous_root_level: int | None = None


def redact_processor(secrets: Iterable[str]) -> Processor:
    """Return a processor that masks secret values and sensitive keys with ``***``.

    Every occurrence of a secret (at least MIN_SECRET_LENGTH characters) inside any string is
    replaced, recursively through dicts, lists, tuples and sets, including keys, the event
    message and rendered exceptions. The value of any key matching ``*secret*``, ``*token*``,
    ``*key*``, ``*password*`` or ``authent*`` (case-insensitive) is replaced entirely, except
    for structlog's own keys (event, level, timestamp, logger, ...). Objects that are not JSON
    primitives are turned into their ``repr`` (as the JSON renderer would) and then redacted.

    Run it after exception rendering: an ``exc_info`` value is passed through untouched.
    """
    values = sorted(
        {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True
    )
    pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None

    def scrub_text(text: str) -> str:
        return pattern.sub(REDACTED, text) if pattern is not None else text

    def scrub(value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return scrub_text(value)
        if isinstance(value, Mapping):
            return {
                (scrub_text(k) if isinstance(k, str) else k): (
                    REDACTED if _is_sensitive_key(k) else scrub(v)
                )
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [scrub(v) for v in value]
        if isinstance(value, bytes | bytearray):
            return scrub_text(repr(bytes(value)))
        structlog_repr = getattr(value, "__structlog__", None)
        if callable(structlog_repr):
            return scrub(structlog_repr())
        return scrub_text(repr(value))

    def processor(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        out: EventDict = {}
        for key, value in event_dict.items():
            if key in _PASSTHROUGH_KEYS:
                out[key] = value
            elif _is_sensitive_key(key):
                out[key] = REDACTED
            else:
                out[scrub_text(key)] = scrub(value)
        return out

    return processor


def _is_sensitive_key(key: object) -> bool:
    return (
        isinstance(key, str)
        and key not in _STRUCTURAL_KEYS
        and _SENSITIVE_KEY_RE.search(key) is not None
    )


def _shared_processors() -> list[Processor]:
    """Processors applied to structlog and (as foreign_pre_chain) to stdlib records alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.StackInfoRenderer(),
    ]


def _file_formatter(redact: Processor) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            redact,
            structlog.processors.JSONRenderer(),
        ],
    )


def _console_formatter(redact: Processor, colors: bool) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,  # plain traceback text, no locals
            redact,
            structlog.dev.ConsoleRenderer(colors=colors),
        ],
    )


class _BoundLogger(structlog.stdlib.BoundLogger):
    """structlog's stdlib logger, dropping a debug or info message below its logger's level
    before building it (``filter_by_level`` would drop it after the processors were called;
    a dropped message was about 3 us, on paths that log on every order)."""

    def debug(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if not self._logger.isEnabledFor(logging.DEBUG):
            return None
        return super().debug(event, *args, **kw)

    def info(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if not self._logger.isEnabledFor(logging.INFO):
            return None
        return super().info(event, *args, **kw)


def reset_logging() -> None:
    """Remove and close the handlers configure_logging installed; restore the root level."""
    global _previous_root_level  # noqa: PLW0603 - module-level record of what we installed
    root = logging.getLogger()
    for handler in _installed_handlers:
        root.removeHandler(handler)
        handler.close()
    _installed_handlers.clear()
    if _previous_root_level is not None:
        root.setLevel(_previous_root_level)
        _previous_root_level = None
    structlog.reset_defaults()


def configure_logging(
    log_dir: Path | None,
    level: str = "INFO",
    secrets: Iterable[str] = (),
    console: bool = True,
) -> None:
    """Route structlog and stdlib logging to ``<log_dir>/bastion.jsonl`` and/or stderr.

    ``log_dir`` None disables the file; ``console`` False disables stderr. Safe to call again
    (for example once the configuration is loaded): the previous handlers are replaced.
    """
    global _previous_root_level  # noqa: PLW0603 - module-level record of what we installed
    numeric_level = logging.getLevelNamesMapping().get(level.upper())
    if numeric_level is None:
        raise ValueError(f"unknown log level {level!r}")
    reset_logging()
    redact = redact_processor(list(secrets))

    handlers: list[logging.Handler] = []
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.WatchedFileHandler(
            Path(log_dir) / LOG_FILE_NAME, encoding="utf-8"
        )
        file_handler.setFormatter(_file_formatter(redact))
        handlers.append(file_handler)
    if console:
        stream_handler = logging.StreamHandler(sys.stderr)
        stream_handler.setFormatter(_console_formatter(redact, colors=_is_tty(sys.stderr)))
        handlers.append(stream_handler)

    root = logging.getLogger()
    _previous_root_level = root.level
    root.setLevel(numeric_level)
    # httpx logs every request at INFO (Telegram's long polling: one every few seconds, with
    # the bot token in the URL); its warnings and errors still come through, redacted.
    logging.getLogger("httpx").setLevel(max(numeric_level, logging.WARNING))
    for handler in handlers:
        root.addHandler(handler)
        _installed_handlers.append(handler)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=_BoundLogger,
        # Not cached: loggers created at import time must follow a later reconfiguration.
        cache_logger_on_first_use=False,
    )


def _is_tty(stream: Any) -> bool:
    isatty: Callable[[], bool] | None = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed stream
        return False
