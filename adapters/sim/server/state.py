"""Persistence of the emulator under ``--state DIR``.

Files (each written atomically: temp file in the same directory, ``fsync``, ``rename``, then
``fsync`` of the directory):

- ``venue.json``: the engine (``SimEngine.to_state()`` without bars), the API keys and the market
  driver (clock, candles played, price scales). Written **before the answer** to every request
  that changed something (order entry, cancel, edit, leverage, admin calls), so an order the
  client saw acknowledged survives a crash; also every second while candles changed the engine,
  and at shutdown.
- ``bars.json``: the engine's 1m bars (OHLCV history, the bulk of the state). Written every
  30 s and at shutdown; after a crash the history may miss the last seconds of candles, never
  orders, fills or positions.

Faults and nonces are runtime-only.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

STATE_FILE = "venue.json"
BARS_FILE = "bars.json"
STATE_VERSION = 1


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
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class StateStore:
    """Reads and writes the two state files of one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @property
    def state_path(self) -> Path:
        return self.directory / STATE_FILE

    @property
    def bars_path(self) -> Path:
        return self.directory / BARS_FILE

    def load(self) -> dict[str, Any] | None:
        """The saved state with the bars merged back into the engine part, or ``None``."""
        if not self.state_path.exists():
            return None
        data = json.loads(self.state_path.read_text(encoding="utf-8"))
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"{self.state_path}: unsupported version {data.get('version')!r}")
        engine = data["engine"]
        bars: dict[str, Any] = {}
        if self.bars_path.exists():
            bars = json.loads(self.bars_path.read_text(encoding="utf-8"))
        engine["bars"] = {s: bars.get(s, []) for s in (i["symbol"] for i in engine["instruments"])}
        log.info("state_loaded", path=str(self.state_path), now=engine["now"])
        return data

    def save(self, engine_state: dict[str, Any], extra: dict[str, Any], bars: bool) -> None:
        engine_state = dict(engine_state)
        bar_data = engine_state.pop("bars")
        atomic_write_json(
            self.state_path, {"version": STATE_VERSION, "engine": engine_state, **extra}
        )
        if bars:
            atomic_write_json(self.bars_path, bar_data)
