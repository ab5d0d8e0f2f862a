"""The emulator as Bastion's child process: Ctrl-C leaves it to its parent; an orphan stops.

That the emulator started on its own still stops on SIGINT is checked by
``tests/adapters/sim_server/test_cli.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

from adapters.sim.server.process import ROOT, EmulatorProcess


def _answers(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/_sim/state", timeout=5) as response:
        return "accounts" in json.loads(response.read())


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (an exited process nobody reaped yet does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "zombie" not in state


def test_ctrl_c_leaves_the_emulator_to_its_parent_which_stops_it(tmp_path: Path) -> None:
    emulator = EmulatorProcess.start(tmp_path / "state", speed=1.0, warmup_minutes=5)
    try:
        # what a terminal's Ctrl-C sends to every process of the foreground group
        emulator.proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert emulator.proc.poll() is None, "SIGINT stopped the emulator under its parent"
        assert _answers(emulator.url)
    finally:
        code = emulator.stop()
    assert code == 0  # SIGTERM: a clean stop, state saved


def test_an_emulator_whose_parent_died_stops_by_itself(tmp_path: Path) -> None:
    stderr = tmp_path / "emulator.err"
    parent = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from adapters.sim.server.process import EmulatorProcess
        emulator = EmulatorProcess.start(
            Path({str(tmp_path / "state")!r}), speed=1.0, warmup_minutes=5,
            log_level="INFO", stderr_path=Path({str(stderr)!r}),
        )
        print("child", emulator.proc.pid, emulator.url, flush=True)
        os._exit(0)  # dies without stopping it, as a killed parent would
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", parent],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("child "))
    _, pid_text, url = line.split()
    pid = int(pid_text)
    deadline = time.monotonic() + 15
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _running(pid):
        os.kill(pid, signal.SIGKILL)
        raise AssertionError(f"the orphaned emulator {pid} ({url}) still runs")
    log = stderr.read_text()
    assert "emulator_parent_gone" in log
    assert "sim_server_stopped" in log  # the clean stop, which saves the state
