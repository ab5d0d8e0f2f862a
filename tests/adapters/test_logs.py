import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from adapters.logs import LOG_FILE_NAME, configure_logging, redact_processor, reset_logging

SECRET = "s3cr3t-VALUE-9f8e7d"


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    root = logging.getLogger()
    before = list(root.handlers)
    yield
    reset_logging()
    assert root.handlers == before


def _lines(log_dir: Path) -> list[dict]:
    text = (log_dir / LOG_FILE_NAME).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def _assert_redacted(log_dir: Path) -> None:
    raw = (log_dir / LOG_FILE_NAME).read_bytes()
    assert SECRET.encode() not in raw
    assert b"***" in raw


def _raise_with_secret(token: str) -> None:
    local_marker = "LOCAL-VARIABLE-MARKER"  # must never appear in the log
    raise RuntimeError(f"auth failed for {token} ({len(local_marker)})")


def test_file_lines_are_json_with_standard_keys(tmp_path: Path) -> None:
    configure_logging(tmp_path / "logs", console=False)
    structlog.get_logger("bastion.test").info("stop_placed", symbol="BTC/USD:USD", qty=0.1)
    logging.getLogger("ccxt").warning("rate limited %d", 3)

    lines = _lines(tmp_path / "logs")
    assert len(lines) == 2
    first, second = lines
    assert first["event"] == "stop_placed"
    assert first["level"] == "info"
    assert first["logger"] == "bastion.test"
    assert first["symbol"] == "BTC/USD:USD"
    assert first["qty"] == 0.1
    assert first["timestamp"].endswith("Z")
    assert second == {
        "event": "rate limited 3",
        "level": "warning",
        "logger": "ccxt",
        "timestamp": second["timestamp"],
    }


def test_level_filters_structlog_and_stdlib(tmp_path: Path) -> None:
    configure_logging(tmp_path, level="WARNING", console=False)
    structlog.get_logger().info("dropped")
    logging.getLogger("pykka").info("dropped too")
    structlog.get_logger().warning("kept")
    assert [line["event"] for line in _lines(tmp_path)] == ["kept"]


def test_http_client_requests_stay_quiet_and_its_warnings_redacted(tmp_path: Path) -> None:
    """httpx (python-telegram-bot's client) logs each request URL, bot token included."""
    configure_logging(tmp_path, secrets=[SECRET], console=False)
    httpx = logging.getLogger("httpx")
    httpx.info('HTTP Request: POST https://api.telegram.org/bot%s/getUpdates "200 OK"', SECRET)
    httpx.warning("retrying https://api.telegram.org/bot%s/sendMessage", SECRET)
    _assert_redacted(tmp_path)
    assert [line["event"] for line in _lines(tmp_path)] == [
        "retrying https://api.telegram.org/bot***/sendMessage"
    ]


def test_secret_as_field_value_and_in_event(tmp_path: Path) -> None:
    configure_logging(tmp_path, secrets=[SECRET], console=False)
    log = structlog.get_logger()
    log.info("order_sent", url=f"https://venue/api?sig={SECRET}", nested={"a": [SECRET]})
    log.info(f"connecting with {SECRET}")

    _assert_redacted(tmp_path)
    first, second = _lines(tmp_path)
    assert first["url"] == "https://venue/api?sig=***"
    assert first["nested"] == {"a": ["***"]}
    assert second["event"] == "connecting with ***"


def test_secret_in_exception_with_traceback(tmp_path: Path) -> None:
    configure_logging(tmp_path, secrets=[SECRET], console=False)
    try:
        _raise_with_secret(SECRET)
    except RuntimeError:
        structlog.get_logger().exception("login_failed")

    _assert_redacted(tmp_path)
    (line,) = _lines(tmp_path)
    (exc,) = line["exception"]
    assert exc["exc_type"] == "RuntimeError"
    assert exc["exc_value"].startswith("auth failed for ***")
    assert [frame["name"] for frame in exc["frames"]][-1] == "_raise_with_secret"


def test_tracebacks_have_no_locals(tmp_path: Path) -> None:
    configure_logging(tmp_path, console=False)
    try:
        _raise_with_secret("x")
    except RuntimeError:
        structlog.get_logger().exception("failed")
        logging.getLogger("httpx").exception("stdlib failed")

    raw = (tmp_path / LOG_FILE_NAME).read_text(encoding="utf-8")
    assert "LOCAL-VARIABLE-MARKER" not in raw
    for line in _lines(tmp_path):
        for exc in line["exception"]:
            for frame in exc["frames"]:
                assert not frame.get("locals")


def test_secret_via_stdlib_logger(tmp_path: Path) -> None:
    configure_logging(tmp_path, secrets=[SECRET], console=False)
    logging.getLogger("telegram").info("url https://x/bot%s/getUpdates", SECRET)
    try:
        _raise_with_secret(SECRET)
    except RuntimeError:
        logging.getLogger("ccxt").exception("request failed")

    _assert_redacted(tmp_path)
    first, second = _lines(tmp_path)
    assert first["event"] == "url https://x/bot***/getUpdates"
    assert first["logger"] == "telegram"
    assert second["exception"][0]["exc_value"].startswith("auth failed for ***")


def test_sensitive_key_names_are_masked(tmp_path: Path) -> None:
    configure_logging(tmp_path, console=False)
    structlog.get_logger().info(
        "config_loaded",
        api_secret=SECRET,
        API_KEY="short",
        bot_token=123,
        db_password=None,
        authentication="Bearer x",
        settings={"exchange": {"api_secret": SECRET}},
        symbol="ETH/USD:USD",
    )

    _assert_redacted(tmp_path)
    (line,) = _lines(tmp_path)
    for key in ("api_secret", "API_KEY", "bot_token", "db_password", "authentication"):
        assert line[key] == "***"
    assert line["settings"] == {"exchange": {"api_secret": "***"}}
    assert line["symbol"] == "ETH/USD:USD"
    assert line["event"] == "config_loaded"
    assert line["level"] == "info"


def test_console_is_redacted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(None, secrets=[SECRET], console=True)
    structlog.get_logger().info("hello", value=SECRET)
    try:
        _raise_with_secret(SECRET)
    except RuntimeError:
        structlog.get_logger().exception("failed")

    err = capsys.readouterr().err
    assert "hello" in err
    assert "RuntimeError: auth failed for ***" in err
    assert SECRET not in err
    assert "\x1b[" not in err  # no colours when stderr is not a tty


def test_short_secrets_are_ignored_for_value_matching() -> None:
    processor = redact_processor(["ab", "", "abcd"])
    out = processor(None, "info", {"event": "ab abcd", "note": "tab"})
    assert out == {"event": "ab ***", "note": "tab"}


def test_redact_processor_standalone_nested_and_overlapping() -> None:
    processor = redact_processor(["abcd", "abcdefgh"])
    exc_info = (ValueError, ValueError("abcd"), None)
    out = processor(
        None,
        "info",
        {
            "event": "x abcdefgh y",
            "items": ("abcd", {"abcd-key-name": 1}, {1, 2}),
            "exc_info": exc_info,
            "count": 3,
        },
    )
    assert out["event"] == "x *** y"
    assert out["items"] == ["***", {"***-key-name": "***"}, [1, 2]]
    assert out["exc_info"] is exc_info
    assert out["count"] == 3


def test_watched_file_handler_reopens_after_rename(tmp_path: Path) -> None:
    configure_logging(tmp_path, console=False)
    log = structlog.get_logger()
    log.info("before_rotate")
    (tmp_path / LOG_FILE_NAME).rename(tmp_path / f"{LOG_FILE_NAME}.1")
    log.info("after_rotate")

    rotated = (tmp_path / f"{LOG_FILE_NAME}.1").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["event"] for line in rotated] == ["before_rotate"]
    assert [line["event"] for line in _lines(tmp_path)] == ["after_rotate"]


def test_creates_missing_log_dir(tmp_path: Path) -> None:
    log_dir = tmp_path / "a" / "b"
    configure_logging(log_dir, console=False)
    structlog.get_logger().info("x")
    assert (log_dir / LOG_FILE_NAME).exists()


def test_configure_twice_does_not_duplicate_handlers(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    configure_logging(tmp_path, console=True)
    configure_logging(tmp_path, console=True, secrets=[SECRET])
    assert len(root.handlers) == before + 2

    structlog.get_logger().info("once", value=SECRET)
    assert [line["event"] for line in _lines(tmp_path)] == ["once"]
    _assert_redacted(tmp_path)


def test_unknown_level_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging(tmp_path, level="LOUD", console=False)
