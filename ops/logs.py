"""``python -m ops.logs``: filter Bastion's JSON log (``<log_dir>/bastion.jsonl``).

Reads the rotated files oldest first (``bastion.jsonl.N[.gz]`` from the highest N, then
``bastion.jsonl-DATE[.gz]``, then ``bastion.jsonl``) and prints the lines that pass every filter,
readably or, with ``--json``, unchanged. ``--follow`` then keeps reading like ``tail -F``, across
logrotate's rename. Corrupt lines are skipped and counted on stderr. Times are UTC; ``--since``
is inclusive, ``--until`` exclusive. Exit codes: 0 ran (with or without matches, or stopped by
Ctrl-C); 1 unexpected error; 2 bad usage, configuration or log location.
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import json
import os
import re
import sys
import threading
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from adapters.logs import LOG_FILE_NAME
from adapters.settings import ConfigError, format_config_error, load_settings
from domain.position_data import parse_client_order_id

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_LEVEL_ALIASES = {"warn": "warning", "exception": "error", "fatal": "critical"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"(?:\d+[smhdw])+")
_ROTATED_RE = re.compile(re.escape(LOG_FILE_NAME) + r"(?:\.(\d+)|-(\d[\d-]*))(\.gz)?")
_FIXED_KEYS = frozenset({"timestamp", "level", "event"})
_KEY_RANK = {"symbol": 0, "position_id": 1, "client_id": 2, "logger": 4, "exception": 5}
_NEEDS_QUOTES = re.compile(r"[\s\"'=\\]")
_CHUNK = 1 << 20


class UsageError(Exception):
    """Bad options, configuration or log location: one line on stderr, exit code 2."""


def _level(name: object) -> int | None:
    key = str(name).lower()
    return LEVELS.get(_LEVEL_ALIASES.get(key, key))


def _level_arg(text: str) -> int:
    rank = _level(text)
    if rank is None:
        raise argparse.ArgumentTypeError(f"unknown level {text!r}; one of {', '.join(LEVELS)}")
    return rank


def _time_arg(text: str) -> datetime | timedelta:
    """An ISO time (naive means UTC) or a duration before now such as ``15m``, ``2h``, ``1d``."""
    text = text.strip()
    if _DURATION_RE.fullmatch(text):
        return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)(.)", text)))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO time (2026-11-22T03:00Z) nor a duration (15m, 2h, 1d)"
        ) from None
    return _utc(when)


def _count_arg(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"expected a count >= 0, got {text!r}")
    return int(text)


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _timestamp(record: dict[str, Any]) -> datetime | None:
    try:
        return _utc(datetime.fromisoformat(record["timestamp"]))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Filters:
    """What a line must satisfy; every given criterion must hold (repeated ones: any of them)."""

    since: datetime | None = None
    until: datetime | None = None
    min_level: int | None = None
    events: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    position: str | None = None
    grep: str | None = None

    def match(self, record: dict[str, Any], text: str) -> bool:
        event, when = str(record.get("event")), _timestamp(record)
        return (
            (self.since is None or (when is not None and when >= self.since))
            and (self.until is None or (when is not None and when < self.until))
            and (self.min_level is None or (_level(record.get("level")) or 0) >= self.min_level)
            and (not self.events or any(fnmatch.fnmatchcase(event, p) for p in self.events))
            and (not self.symbols or str(record.get("symbol")).upper() in self.symbols)
            and (self.position is None or self._position_ok(record))
            and (self.grep is None or self.grep in text.lower())
        )

    def _position_ok(self, record: dict[str, Any]) -> bool:
        """``position_id`` equal, or a client order id that Bastion made for that position."""
        if str(record.get("position_id")) == self.position:
            return True
        client_id = record.get("client_id")
        parsed = parse_client_order_id(client_id) if isinstance(client_id, str) else None
        return parsed is not None and parsed[0] == self.position


def _text(value: Any) -> str:
    if isinstance(value, str):
        plain = value and value.isprintable() and not _NEEDS_QUOTES.search(value)
        return value if plain else json.dumps(value)
    return json.dumps(value, separators=(",", ":"), default=str)


def _exception_summary(value: Any) -> str:
    """``Type: message`` per chained exception; the full traceback is in ``--json``."""
    if isinstance(value, list) and all(isinstance(e, dict) for e in value):
        return "; ".join(f"{e.get('exc_type')}: {e.get('exc_value')}" for e in value)
    if isinstance(value, str) and value.strip():
        return value.strip().splitlines()[-1]
    return json.dumps(value, default=str)


def render(record: dict[str, Any]) -> str:
    """``TIMESTAMP LEVEL event key=value ...``: known keys first, then the rest sorted."""
    when = _timestamp(record)
    stamp = _text(record.get("timestamp", "-"))
    if when is not None:
        stamp = f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}Z"
    event = str(record.get("event", "-"))
    parts = [stamp, f"{str(record.get('level', '-')).upper():<7}"]
    parts.append(event if event.isprintable() else json.dumps(event))
    for key in sorted(record.keys() - _FIXED_KEYS, key=lambda k: (_KEY_RANK.get(k, 3), k)):
        value = _exception_summary(record[key]) if key == "exception" else record[key]
        parts.append(f"{key}={_text(value)}")
    return " ".join(parts)


def _parse(raw: bytes) -> tuple[str, dict[str, Any]] | None:
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
        record = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return (text, record) if isinstance(record, dict) else None


class Sink:
    """Filters parsed lines and writes them; with a limit, holds the last N until released."""

    def __init__(self, out: TextIO, filters: Filters, as_json: bool, limit: int | None) -> None:
        self.out, self.filters, self.as_json = out, filters, as_json
        self.corrupt: Counter[str] = Counter()
        self._held: deque[str] | None = deque(maxlen=limit) if limit is not None else None

    def feed(self, raw: bytes, source: str) -> None:
        if not raw.strip():
            return
        parsed = _parse(raw)
        if parsed is None:
            self.corrupt[source] += 1
            return
        text, record = parsed
        if self.filters.match(record, text):
            line = text if self.as_json else render(record)
            if self._held is not None:
                self._held.append(line)
            else:
                self.out.write(line + "\n")

    def release(self) -> None:
        """Write the held lines (if any) and stream from now on."""
        if self._held is not None:
            self.out.writelines(line + "\n" for line in self._held)
            self._held = None
        self.out.flush()


def log_files(log_dir: Path) -> list[Path]:
    """The log files oldest first; of ``.N`` and ``.N.gz`` (mid-compression) the plain one."""
    rotated: dict[tuple[int, int, str], Path] = {}
    for path in log_dir.iterdir():
        match = _ROTATED_RE.fullmatch(path.name)
        if match is not None:
            number, date, gz = match.groups()
            key = (0, -int(number), "") if number is not None else (1, 0, date)
            if key not in rotated or not gz:
                rotated[key] = path
    live = log_dir / LOG_FILE_NAME
    return [rotated[k] for k in sorted(rotated)] + ([live] if live.is_file() else [])


def _lines(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            yield from fh
    except (OSError, EOFError, zlib.error) as err:
        print(f"ops.logs: stopped reading {path}: {err}", file=sys.stderr)


class Tail:
    """Complete lines appended to a file; follows it to a new file after rename or truncation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: BinaryIO | None = None
        self._id: tuple[int, int] = (0, 0)
        self._partial = b""

    def poll(self) -> list[bytes]:
        """What is new since the last call ([] if nothing); never blocks."""
        if self._fh is None and not self._open():
            return []
        return self._read() or self._check_rotation()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _open(self) -> bool:
        try:
            self._fh = self.path.open("rb")
        except FileNotFoundError:
            return False
        stat = os.fstat(self._fh.fileno())
        self._id, self._partial = (stat.st_dev, stat.st_ino), b""
        return True

    def _read(self) -> list[bytes]:
        assert self._fh is not None
        while data := self._fh.read(_CHUNK):
            self._partial += data
            if b"\n" in data:
                *lines, self._partial = self._partial.split(b"\n")
                return lines
        return []

    def _check_rotation(self) -> list[bytes]:
        assert self._fh is not None
        try:
            stat = self.path.stat()
        except FileNotFoundError:  # renamed, the new file not created yet
            return []
        if (stat.st_dev, stat.st_ino) != self._id:
            lines: list[bytes] = []
            while batch := self._read():  # writes that raced the rename
                lines.extend(batch)
            lines.append(self._partial)  # the old file is finished: a partial line is final
            self.close()
            return lines
        if stat.st_size < self._fh.tell():  # truncated in place (copytruncate)
            self._fh.seek(0)
            self._partial = b""
        return []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.logs",
        description="Filter Bastion's JSON log, rotated files included. Times are UTC. The log "
        "directory is --dir, else log_dir from the settings (--config, BASTION_LOG_DIR, ./logs).",
        epilog="Exit codes: 0 ran (matches or not), 1 unexpected error, 2 bad usage or location.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, metavar="PATH", help="take log_dir from this YAML")
    where.add_argument("--dir", type=Path, metavar="PATH", help="the log directory")
    where.add_argument("--file", type=Path, metavar="PATH", help="one log file (.gz allowed)")
    add = parser.add_argument
    add("--since", type=_time_arg, metavar="TIME", help="ISO time or 15m/2h/1d ago (inclusive)")
    add("--until", type=_time_arg, metavar="TIME", help="ISO time or 15m/2h/1d ago (exclusive)")
    add("--level", type=_level_arg, metavar="LEVEL", help=f"minimum level: {', '.join(LEVELS)}")
    many: dict[str, Any] = {"action": "append", "default": []}
    add("--event", **many, metavar="GLOB", help="event name or glob (stop_*); repeatable")
    add("--symbol", **many, metavar="SYMBOL", help="e.g. BTC/USD:USD; repeatable")
    add("--position", metavar="ID", help="position id (also its orders' client ids)")
    add("--grep", metavar="TEXT", help="case-insensitive text anywhere in the JSON line")
    add("-n", "--limit", type=_count_arg, metavar="N", help="only the last N matching lines")
    add("--json", action="store_true", help="print matching lines as JSON, unchanged")
    add("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    return parser


def _filters(args: argparse.Namespace, now: datetime) -> Filters:
    since, until = (now - t if isinstance(t, timedelta) else t for t in (args.since, args.until))
    if since is not None and until is not None and since >= until:
        raise UsageError("--since must be before --until")
    if args.follow and until is not None:
        raise UsageError("--until cannot be used with --follow")
    return Filters(
        since=since,
        until=until,
        min_level=args.level,
        events=tuple(args.event),
        symbols=tuple(s.upper() for s in args.symbol),
        position=args.position,
        grep=args.grep.lower() if args.grep is not None else None,
    )


def _sources(args: argparse.Namespace) -> tuple[list[Path], Path]:
    """(files to read oldest first, the file to follow)."""
    if args.file is not None:
        try:
            args.file.open("rb").close()
        except OSError as err:
            raise UsageError(f"cannot read log file {args.file}: {err.strerror or err}") from None
        if args.follow and args.file.name.endswith(".gz"):
            raise UsageError("--follow needs a plain log file, not a .gz")
        return [args.file], args.file
    try:
        log_dir = args.dir if args.dir is not None else load_settings(args.config).log_dir
    except ConfigError as err:
        raise UsageError(format_config_error(err)) from None
    if not log_dir.is_dir():
        raise UsageError(f"no log directory at {log_dir} (use --dir, --file or --config)")
    try:
        files = log_files(log_dir)
    except OSError as err:
        raise UsageError(f"cannot list {log_dir}: {err.strerror or err}") from None
    if not files and not args.follow:
        print(f"ops.logs: no {LOG_FILE_NAME} files in {log_dir}", file=sys.stderr)
    return files, log_dir / LOG_FILE_NAME


def _follow(tail: Tail, sink: Sink, stop: threading.Event, poll_s: float) -> None:
    try:
        while True:
            lines = tail.poll()
            for raw in lines:
                sink.feed(raw, tail.path.name)
            if not lines:
                sink.release()
                if stop.wait(poll_s):
                    return
    finally:
        tail.close()


def _report(corrupt: Counter[str]) -> None:
    if total := sum(corrupt.values()):
        where = ", ".join(f"{name}: {n}" for name, n in corrupt.items())
        noun = "line" if total == 1 else "lines"
        print(f"ops.logs: skipped {total} corrupt {noun} ({where})", file=sys.stderr)


def _run(
    args: argparse.Namespace, out: TextIO, now: datetime, stop: threading.Event, poll_s: float
) -> int:
    sink = Sink(out, _filters(args, now), args.json, args.limit)
    files, live = _sources(args)
    try:
        for path in files:
            if not (args.follow and path == live):
                for raw in _lines(path):
                    sink.feed(raw, path.name)
        if args.follow:
            _follow(Tail(live), sink, stop, poll_s)
        sink.release()
    except KeyboardInterrupt:
        out.flush()
    finally:
        _report(sink.corrupt)
    return EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    now: Callable[[], datetime] | None = None,
    stop: threading.Event | None = None,
    poll_s: float = 0.25,
) -> int:
    """Run the command; ``out``, ``now``, ``stop`` and ``poll_s`` are for tests."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help or an argparse error (already printed)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    stream = sys.stdout if out is None else out
    clock = now or (lambda: datetime.now(UTC))
    try:
        return _run(args, stream, clock(), stop or threading.Event(), poll_s)
    except UsageError as err:
        print(f"ops.logs: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `| head`: the reader is gone, which is fine
        if stream is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as err:
        print(f"ops.logs: unexpected {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
