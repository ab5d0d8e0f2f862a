"""Persistence of the emulator under ``--state DIR``: periodic snapshot plus write-ahead journal.

Files:

- ``venue.json``: the snapshot of the engine (``SimEngine.to_state()`` without bars), the API
  keys, the market driver (clock, candles played, price scales) and ``journal_seq``, the number
  of the last journal entry it includes.
- ``bars.json``: the engine's 1m bars (OHLCV history), written right after ``venue.json``.
- ``journal.jsonl``: one JSON line per persisted change since the snapshot (``seq``, the engine
  delta of :mod:`adapters.sim.server.journal`, keys and market driver). Each line is written and
  ``fdatasync``-ed **before the answer** to the request that made the change, so an order the
  client saw acknowledged survives a crash, at a cost proportional to the change.

Snapshots are written atomically (temp file in the same directory, ``fsync``, ``rename``,
``fsync`` of the directory) at start, periodically and at shutdown; the journal is truncated
right after. Loading takes the snapshot, then the journal entries numbered above its
``journal_seq`` in sequence (entries a crash left between a snapshot and the truncation are
skipped that way). A torn or unreadable line (crash mid-write) ends the journal: it and anything
after it are ignored, and the next snapshot, taken right after the start, drops them. Bars may
miss the candles of the last seconds after a crash; orders, fills and positions are never lost.

Faults and nonces are runtime-only.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import structlog

log = structlog.get_logger(__name__)

STATE_FILE = "venue.json"
BARS_FILE = "bars.json"
JOURNAL_FILE = "journal.jsonl"
STATE_VERSION = 1


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _datasync(fd: int) -> None:
    getattr(os, "fdatasync", os.fsync)(fd)


def atomic_write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@dataclass
class Loaded:
    """A snapshot (bars merged back into ``state["engine"]``) and the journal entries after it."""

    state: dict[str, Any]
    entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def journal_seq(self) -> int:
        return int(self.entries[-1]["seq"]) if self.entries else int(self.state["journal_seq"])


class StateStore:
    """Reads and writes the snapshot, bars and journal files of one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._journal: IO[bytes] | None = None

    @property
    def state_path(self) -> Path:
        return self.directory / STATE_FILE

    @property
    def bars_path(self) -> Path:
        return self.directory / BARS_FILE

    @property
    def journal_path(self) -> Path:
        return self.directory / JOURNAL_FILE

    def load(self) -> Loaded | None:
        """The saved snapshot and the journal entries to replay on it, or ``None``."""
        if not self.state_path.exists():
            return None
        data = json.loads(self.state_path.read_text(encoding="utf-8"))
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"{self.state_path}: unsupported version {data.get('version')!r}")
        data.setdefault("journal_seq", 0)
        engine = data["engine"]
        bars: dict[str, Any] = {}
        if self.bars_path.exists():
            bars = json.loads(self.bars_path.read_text(encoding="utf-8"))
        engine["bars"] = {s: bars.get(s, []) for s in (i["symbol"] for i in engine["instruments"])}
        loaded = Loaded(data, self._read_journal(int(data["journal_seq"])))
        log.info(
            "state_loaded",
            path=str(self.state_path),
            now=engine["now"],
            journal_entries=len(loaded.entries),
        )
        return loaded

    def _read_journal(self, after: int) -> list[dict[str, Any]]:
        if not self.journal_path.exists():
            return []
        entries: list[dict[str, Any]] = []
        expected = after + 1
        with self.journal_path.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                try:
                    if not line.endswith(b"\n"):
                        raise ValueError("no line end")
                    entry = json.loads(line)
                    seq = int(entry["seq"])
                except (ValueError, KeyError, TypeError):
                    log.warning("journal_torn_line_ignored", line=number)
                    break
                if seq <= after:
                    continue  # already in the snapshot (crash before the journal was truncated)
                if seq != expected:
                    log.warning("journal_gap", line=number, seq=seq, expected=expected)
                    break
                entries.append(entry)
                expected += 1
        return entries

    def save(self, engine_state: dict[str, Any], extra: dict[str, Any], journal_seq: int) -> None:
        """Write a snapshot (``engine_state`` with bars) and then truncate the journal."""
        engine_state = dict(engine_state)
        bar_data = engine_state.pop("bars")
        atomic_write_json(
            self.state_path,
            {"version": STATE_VERSION, "engine": engine_state, **extra, "journal_seq": journal_seq},
        )
        # Bars second: a crash in between leaves them older than the engine, never newer.
        atomic_write_json(self.bars_path, bar_data)
        journal = self._open_journal()
        journal.truncate(0)
        os.fsync(journal.fileno())

    def append(self, entry: dict[str, Any]) -> None:
        """Append one journal entry and make it durable before returning."""
        journal = self._open_journal()
        journal.write(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
        journal.flush()
        _datasync(journal.fileno())

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _open_journal(self) -> IO[bytes]:
        if self._journal is None:
            created = not self.journal_path.exists()
            self._journal = self.journal_path.open("ab")
            if created:
                os.fsync(self._journal.fileno())
                _fsync_dir(self.directory)
        return self._journal
