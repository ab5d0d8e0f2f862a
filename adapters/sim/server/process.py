"""The emulator as a child process, for ``run.py paper`` and whole-system tests.

Started as ``python -m adapters.sim.server`` (its own interpreter, so a crash of either side
never takes the other down); the first stdout line announces the URL. Stopped with SIGTERM,
which saves its state; SIGKILL only if it does not exit in time. It is started as this
process's child (``--parent-pid``): a Ctrl-C in the terminal leaves it running for this
process's shutdown, and it stops by itself if this process dies without stopping it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)
ROOT = Path(__file__).resolve().parents[3]


class EmulatorProcess:
    """A running emulator: ``url`` (http), ``ws_url``, ``stop()``."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str) -> None:
        self.proc = proc
        self.url = url
        self.ws_url = url.replace("http://", "ws://", 1) + "/ws/v1"

    @classmethod
    def start(
        cls,
        state_dir: Path,
        *,
        speed: float = 60.0,
        seed: int = 1,
        warmup_minutes: int = 600,
        log_level: str = "WARNING",
        timeout_s: float = 60.0,
        stderr_path: Path | None = None,
    ) -> EmulatorProcess:
        """Start it and wait for its URL; ``stderr_path`` collects its stderr (appended)."""
        state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "adapters.sim.server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--state",
            str(state_dir),
            "--speed",
            str(speed),
            "--seed",
            str(seed),
            "--warmup-minutes",
            str(warmup_minutes),
            "--log-level",
            log_level,
            "--parent-pid",
            str(os.getpid()),
        ]
        err = None if stderr_path is None else stderr_path.open("ab")
        try:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, env=dict(os.environ)
            )
        finally:
            if err is not None:
                err.close()
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, left))
            if not ready or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"the simulated exchange did not start (exit {proc.poll()})")
            chunk = os.read(proc.stdout.fileno(), 4096)
            line += chunk
        url = json.loads(line.decode().splitlines()[0])["url"]
        log.info("emulator_started", url=url, pid=proc.pid, speed=speed)
        return cls(proc, url)

    def stop(self, timeout_s: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        log.info("emulator_stopped", pid=self.proc.pid, code=self.proc.returncode)
        return int(self.proc.returncode)
