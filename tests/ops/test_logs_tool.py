"""``python -m ops.logs``: filters, rotated files, corrupt lines, --follow, errors."""

from __future__ import annotations

import gzip
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from adapters.logs import LOG_FILE_NAME, configure_logging, reset_logging
from domain.models import OrderRole
from domain.position_data import client_order_id
from ops.logs import log_files, main, render

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
BTC, ETH = "BTC/USD:USD", "ETH/USD:USD"
P1_STOP = client_order_id("p1", OrderRole.STOP, 1)  # bst-p1-sl-1
P10_ENTRY = client_order_id("p10", OrderRole.ENTRY, 1)  # must not match --position p1


def rec(ts: str, event: str, level: str = "info", **fields: object) -> str:
    return json.dumps(
        {"event": event, "level": level, "logger": "bastion.test", "timestamp": ts, **fields}
    )


def write(path: Path, *lines: str | bytes, mode: str = "wb") -> None:
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    if path.name.endswith(".gz"):
        with gzip.open(path, mode) as fh:
            fh.write(data)
    else:
        with path.open(mode) as fh:
            fh.write(data)


def append(path: Path, *lines: str | bytes) -> None:
    write(path, *lines, mode="ab")


DAY = [
    rec("2026-11-22T03:00:00Z", "system_ready", mode="live"),
    rec("2026-11-22T03:30:00Z", "tick", "debug", symbol=BTC),
    rec("2026-11-22T03:41:07.123456Z", "stop_lost", "warning", symbol=BTC, position_id="p1"),
    rec("2026-11-22T03:50:00Z", "order_rejected", "error", symbol=BTC, client_id=P1_STOP),
    rec("2026-11-22T03:52:00Z", "order_sent", symbol=BTC, client_id=P10_ENTRY),
    rec("2026-11-22T03:55:00Z", "stop_placed", symbol=ETH, position_id="p2", note="Moved Up"),
    rec("2026-11-22T03:59:00Z", "kill_switch_latched", "critical", reason="drawdown"),
]


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    write(tmp_path / LOG_FILE_NAME, *DAY)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, list[str], str]:
    code = main([str(a) for a in argv], now=lambda: NOW)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def events(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> list[str]:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return [json.loads(line)["event"] for line in out]


# --- output --------------------------------------------------------------------------------------


def test_readable_line_known_keys_first_then_sorted() -> None:
    record = json.loads(DAY[2]) | {"attempt": 2, "reason": "price moved", "extra": {"a": [1]}}
    assert render(record) == (
        "2026-11-22T03:41:07.123Z WARNING stop_lost symbol=BTC/USD:USD position_id=p1 attempt=2 "
        'extra={"a":[1]} reason="price moved" logger=bastion.test'
    )


def test_readable_line_odd_values() -> None:
    exc = [{"exc_type": "RuntimeError", "exc_value": "boom", "frames": [{"name": "f"}]}]
    line = render({"event": "a\x1b[31mb", "timestamp": "garbage", "exception": exc, "ok": True})
    assert line == 'garbage -       "a\\u001b[31mb" ok=true exception="RuntimeError: boom"'


def test_default_output_is_readable(log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--dir", log_dir)
    assert (code, err) == (0, "")
    assert len(out) == len(DAY)
    assert out[0] == "2026-11-22T03:00:00.000Z INFO    system_ready mode=live logger=bastion.test"


def test_json_passes_lines_through_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ['{"timestamp":"2026-11-22T03:00:00Z","level":"info","event":"x","z":1,"a":"é"}']
    write(tmp_path / LOG_FILE_NAME, *lines)
    assert run(capsys, "--dir", tmp_path, "--json") == (0, lines, "")


# --- filters -------------------------------------------------------------------------------------


def test_time_range_absolute_since_inclusive_until_exclusive(
    log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got = events(
        capsys, "--dir", log_dir, "--since", "2026-11-22T03:30", "--until", "2026-11-22T03:52Z"
    )
    assert got == ["tick", "stop_lost", "order_rejected"]


def test_time_range_offsets_are_converted_to_utc(
    log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got = events(capsys, "--dir", log_dir, "--since", "2026-11-22T05:55:00+02:00")
    assert got == ["stop_placed", "kill_switch_latched"]


def test_time_range_relative_to_now(log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert events(capsys, "--dir", log_dir, "--since", "10m") == [
        "order_rejected",
        "order_sent",
        "stop_placed",
        "kill_switch_latched",
    ]
    assert events(capsys, "--dir", log_dir, "--since", "1h", "--until", "59m") == ["system_ready"]
    assert events(capsys, "--dir", log_dir, "--since", "1d") == [
        json.loads(r)["event"] for r in DAY
    ]


def test_time_filter_drops_lines_without_timestamp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / LOG_FILE_NAME, '{"event": "no_time", "level": "info"}', DAY[0])
    assert events(capsys, "--dir", tmp_path) == ["no_time", "system_ready"]
    assert events(capsys, "--dir", tmp_path, "--since", "1d") == ["system_ready"]


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("warning", ["stop_lost", "order_rejected", "kill_switch_latched"]),
        ("WARN", ["stop_lost", "order_rejected", "kill_switch_latched"]),
        ("error", ["order_rejected", "kill_switch_latched"]),
        ("critical", ["kill_switch_latched"]),
    ],
)
def test_level_is_a_minimum(
    log_dir: Path, capsys: pytest.CaptureFixture[str], level: str, expected: list[str]
) -> None:
    assert events(capsys, "--dir", log_dir, "--level", level) == expected
    assert len(events(capsys, "--dir", log_dir, "--level", "debug")) == len(DAY)


def test_event_exact_glob_and_repeated(log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert events(capsys, "--dir", log_dir, "--event", "stop_*") == ["stop_lost", "stop_placed"]
    assert events(capsys, "--dir", log_dir, "--event", "stop") == []
    got = events(capsys, "--dir", log_dir, "--event", "tick", "--event", "kill_*")
    assert got == ["tick", "kill_switch_latched"]


def test_symbol_any_case_and_repeated(log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert events(capsys, "--dir", log_dir, "--symbol", "eth/usd:usd") == ["stop_placed"]
    got = events(capsys, "--dir", log_dir, "--symbol", BTC, "--symbol", ETH)
    assert got == ["tick", "stop_lost", "order_rejected", "order_sent", "stop_placed"]


def test_position_matches_id_and_its_client_order_ids(
    log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert events(capsys, "--dir", log_dir, "--position", "p1") == ["stop_lost", "order_rejected"]
    assert events(capsys, "--dir", log_dir, "--position", "p10") == ["order_sent"]


def test_grep_and_combined_filters(log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert events(capsys, "--dir", log_dir, "--grep", "moved up") == ["stop_placed"]
    got = events(capsys, "--dir", log_dir, "--symbol", BTC, "--level", "info", "--event", "o*")
    assert got == ["order_rejected", "order_sent"]


def test_limit_keeps_the_last_matches(log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert events(capsys, "--dir", log_dir, "--limit", "2") == [
        "stop_placed",
        "kill_switch_latched",
    ]
    assert events(capsys, "--dir", log_dir, "-n", "1", "--symbol", BTC) == ["order_sent"]
    assert events(capsys, "--dir", log_dir, "--limit", "0") == []


# --- files ---------------------------------------------------------------------------------------


def test_rotated_and_gz_files_read_oldest_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "bastion.jsonl.10.gz", rec("2026-11-12T00:00:00Z", "day10"))
    write(tmp_path / "bastion.jsonl.3.gz", rec("2026-11-19T00:00:00Z", "day3"))
    write(tmp_path / "bastion.jsonl.2.gz", rec("2026-11-20T00:00:00Z", "day2"))
    write(tmp_path / "bastion.jsonl.1", rec("2026-11-21T00:00:00Z", "day1"))
    # logrotate compressing .1 right now: the partial .gz must not duplicate or hide it
    write(tmp_path / "bastion.jsonl.1.gz", rec("2026-11-21T00:00:00Z", "dup"))
    write(tmp_path / LOG_FILE_NAME, rec("2026-11-22T00:00:00Z", "today"))
    write(tmp_path / "other.jsonl.1", rec("2026-11-22T00:00:00Z", "unrelated"))
    assert events(capsys, "--dir", tmp_path) == ["day10", "day3", "day2", "day1", "today"]
    assert events(capsys, "--dir", tmp_path, "--since", "2026-11-20") == ["day2", "day1", "today"]


def test_dateext_rotation_is_ordered_by_date(tmp_path: Path) -> None:
    for name in ("bastion.jsonl-20261121", "bastion.jsonl-20261120.gz", LOG_FILE_NAME):
        write(tmp_path / name, DAY[0])
    assert [p.name for p in log_files(tmp_path)] == [
        "bastion.jsonl-20261120.gz",
        "bastion.jsonl-20261121",
        LOG_FILE_NAME,
    ]


def test_single_file_plain_or_gz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "copy.jsonl.gz", *DAY[:2])
    assert events(capsys, "--file", tmp_path / "copy.jsonl.gz") == ["system_ready", "tick"]


def test_corrupt_lines_are_skipped_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "bastion.jsonl.1", "not json", DAY[0], '{"event": "cut off', b"\xff\xfe{}")
    write(tmp_path / LOG_FILE_NAME, "", "[1, 2]", DAY[1], "\x00\x00\x00", "   ", DAY[2], '{"trunc')
    code, out, err = run(capsys, "--dir", tmp_path)
    assert code == 0
    assert [line.split()[2] for line in out] == ["system_ready", "tick", "stop_lost"]
    assert err == "ops.logs: skipped 6 corrupt lines (bastion.jsonl.1: 3, bastion.jsonl: 3)\n"


def test_one_corrupt_line_and_a_truncated_gz(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "bastion.jsonl.2.gz", *DAY[:3])
    data = (tmp_path / "bastion.jsonl.2.gz").read_bytes()
    (tmp_path / "bastion.jsonl.2.gz").write_bytes(data[: len(data) - 12])  # no gzip trailer
    write(tmp_path / LOG_FILE_NAME, "oops", DAY[3])
    code, out, err = run(capsys, "--dir", tmp_path, "--json")
    assert code == 0
    assert [json.loads(line)["event"] for line in out][-1] == "order_rejected"
    assert "ops.logs: stopped reading" in err
    assert "bastion.jsonl.2.gz" in err
    assert err.endswith("ops.logs: skipped 1 corrupt line (bastion.jsonl: 1)\n")


def test_real_structlog_output_is_understood(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(tmp_path, console=False)
    try:
        log = structlog.get_logger("bastion.execution")
        log.info("stop_placed", symbol=BTC, position_id="p7")
        log.warning("stop_lost", symbol=BTC, position_id="p7")
        logging.getLogger("ccxt").error("rate limited %d", 3)
    finally:
        reset_logging()
    code = main(["--dir", str(tmp_path), "--level", "warning", "--since", "1m"])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert (code, err, len(lines)) == (0, "", 2)
    assert lines[0].endswith(
        "Z WARNING stop_lost symbol=BTC/USD:USD position_id=p7 logger=bastion.execution"
    )
    assert lines[1].endswith("Z ERROR   rate limited 3 logger=ccxt")


def test_empty_directory_is_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--dir", tmp_path) == (
        0,
        [],
        f"ops.logs: no bastion.jsonl files in {tmp_path}\n",
    )


# --- where the log is ----------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BASTION_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("clean_env")
def test_config_file_gives_the_log_dir(
    log_dir: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path_factory.mktemp("etc") / "config.yaml"
    config.write_text(f"log_dir: {log_dir}\n")
    assert events(capsys, "--config", config, "--event", "tick") == ["tick"]


@pytest.mark.usefixtures("clean_env")
def test_default_is_the_built_in_log_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "logs").mkdir()
    write(tmp_path / "logs" / LOG_FILE_NAME, DAY[0])
    monkeypatch.chdir(tmp_path)
    assert events(capsys) == ["system_ready"]
    monkeypatch.setenv("BASTION_LOG_DIR", str(tmp_path / "elsewhere"))
    code, _, err = run(capsys)
    assert code == 2
    assert "elsewhere" in err


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--level", "loud"], "unknown level 'loud'"),
        (["--since", "yesterday"], "neither an ISO time"),
        (["--until", "03:52Z"], "neither an ISO time"),
        (["--limit", "-1"], "expected a count >= 0"),
        (["--since", "1h", "--until", "2h"], "--since must be before --until"),
        (["--follow", "--until", "1h"], "--until cannot be used with --follow"),
        (["--dir", "{tmp}/missing"], "no log directory at"),
        (["--file", "{tmp}/missing.jsonl"], "cannot read log file"),
        (["--file", "{tmp}"], "cannot read log file"),
        (["--follow", "--file", "{tmp}/x.gz"], "--follow needs a plain log file"),
        (["--config", "{tmp}/missing.yaml"], "config_file: file not found"),
        (["--config", "{tmp}/bad.yaml"], "log_dirr: "),
        (["--dir", "{tmp}", "--file", "{tmp}/x.gz"], "not allowed with argument"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_usage_exits_2_with_one_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    write(tmp_path / "x.gz", DAY[0])
    (tmp_path / "bad.yaml").write_text("log_dirr: /tmp\n")
    code, out, err = run(capsys, *(a.format(tmp=tmp_path) for a in argv))
    assert (code, out) == (2, [])
    assert message in err
    assert "Traceback" not in err


# --- follow --------------------------------------------------------------------------------------


class Lines:
    """A thread-safe stand-in for stdout that hands over each complete line."""

    def __init__(self) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self._buffer = ""

    def write(self, text: str) -> int:
        *done, self._buffer = (self._buffer + text).split("\n")
        for line in done:
            self._queue.put(line)
        return len(text)

    def writelines(self, lines: Iterator[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def events(self, n: int) -> list[str]:
        return [json.loads(self._queue.get(timeout=10))["event"] for _ in range(n)]

    def assert_empty(self) -> None:
        assert self._queue.empty()


class Stopper(threading.Event):
    """The follow loop's stop event; counts its idle waits so tests can sync without sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition()
        self._idle = 0

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            self._idle += 1
            self._cond.notify_all()
        return super().wait(timeout)

    def settle(self) -> None:
        """Return once the follower has polled the file at least once after this call."""
        with self._cond:
            target = self._idle + 2
            assert self._cond.wait_for(lambda: self._idle >= target, timeout=10)


@contextmanager
def following(*argv: str | Path) -> Iterator[tuple[Lines, Stopper]]:
    out, stop, result = Lines(), Stopper(), []
    args = [str(a) for a in (*argv, "--follow", "--json")]

    def target() -> None:
        result.append(main(args, out=out, stop=stop, poll_s=0.005))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield out, stop
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert result == [0]


def test_follow_picks_up_appended_lines_and_waits_for_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / LOG_FILE_NAME
    write(log, DAY[0])
    with following("--dir", tmp_path) as (out, stop):
        assert out.events(1) == ["system_ready"]
        append(log, DAY[1])
        assert out.events(1) == ["tick"]
        with log.open("ab") as fh:  # a record half written: nothing yet, and not corrupt
            fh.write(DAY[2][:30].encode())
            fh.flush()
            stop.settle()
            out.assert_empty()
            fh.write(DAY[2][30:].encode() + b"\n")
        assert out.events(1) == ["stop_lost"]


def test_follow_survives_rotation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log, old = tmp_path / LOG_FILE_NAME, tmp_path / "bastion.jsonl.1"
    write(tmp_path / "bastion.jsonl.2.gz", DAY[0])
    write(log, DAY[1])
    with following("--dir", tmp_path) as (out, stop):
        assert out.events(2) == ["system_ready", "tick"]
        log.rename(old)
        stop.settle()  # the follower has seen the file gone
        with old.open("ab") as fh:  # a write that raced the rename, then a torn record
            fh.write(DAY[2].encode() + b"\n{trunc")
        write(log, DAY[3])  # logrotate's `create`, then the handler's next record
        assert out.events(2) == ["stop_lost", "order_rejected"]
        append(log, DAY[4])
        assert out.events(1) == ["order_sent"]
        stop.settle()
        out.assert_empty()
    assert capsys.readouterr().err == "ops.logs: skipped 1 corrupt line (bastion.jsonl: 1)\n"


def test_follow_survives_truncation(tmp_path: Path) -> None:
    log = tmp_path / LOG_FILE_NAME
    write(log, *DAY[:3])
    with following("--file", log) as (out, stop):
        assert out.events(3) == ["system_ready", "tick", "stop_lost"]
        log.write_bytes(b"")  # copytruncate
        stop.settle()
        append(log, DAY[3])
        assert out.events(1) == ["order_rejected"]


def test_follow_waits_for_the_file_to_appear(tmp_path: Path) -> None:
    with following("--dir", tmp_path) as (out, stop):
        stop.settle()
        write(tmp_path / LOG_FILE_NAME, DAY[0])
        assert out.events(1) == ["system_ready"]


def test_follow_with_limit_and_filters(tmp_path: Path) -> None:
    log = tmp_path / LOG_FILE_NAME
    write(log, *DAY)
    with following("--dir", tmp_path, "--limit", "2", "--symbol", BTC) as (out, stop):
        assert out.events(2) == ["order_rejected", "order_sent"]
        append(log, DAY[6], DAY[1])
        assert out.events(1) == ["tick"]
        stop.settle()
        out.assert_empty()


# --- as a process --------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}


def _popen(*argv: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ops.logs", *(str(a) for a in argv)],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_module_runs_as_a_process(log_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ops.logs", "--dir", str(log_dir), "--level", "error"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert [line.split()[2] for line in done.stdout.splitlines()] == [
        "order_rejected",
        "kill_switch_latched",
    ]


def test_ctrl_c_in_follow_exits_0(log_dir: Path) -> None:
    proc = _popen("--dir", log_dir, "--follow", "--limit", "1")
    try:
        assert proc.stdout is not None
        assert "kill_switch_latched" in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert (proc.returncode, err) == (0, "")


def test_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    write(tmp_path / LOG_FILE_NAME, *(DAY * 3000))
    proc = _popen("--dir", tmp_path)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("2026-11-22T03:00:00.000Z")
        proc.stdout.close()
        assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None
        assert proc.stderr.read() == ""
    finally:
        proc.kill()
