from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from adapters.settings import (
    DEFAULT_SYMBOLS,
    ConfigError,
    Settings,
    format_config_error,
    load_settings,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _errors(path: Path | None = None, environ: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ or {})
    return dict(info.value.errors)


def test_defaults_without_file_or_environment() -> None:
    settings = load_settings(None, {})
    assert settings.exchange.id == "krakenfutures"
    assert settings.exchange.api_key is None
    assert settings.universe.symbols == list(DEFAULT_SYMBOLS)
    assert settings.universe.bias_timeframes == ["4h"]
    assert settings.universe.entry_timeframes == ["15m"]
    assert settings.strategy.name == "smc"
    assert settings.risk.risk_per_trade == 0.005
    assert settings.risk.max_margin_util == 0.5
    assert settings.allocator.auction_max_margin_util == 0.35
    assert settings.kill_switch.latched_on_start is False
    assert settings.telegram.token is None
    assert settings.health.host == "127.0.0.1"
    assert settings.health.port == 8787
    assert settings.data_dir == Path("data")
    assert settings.log_dir == Path("logs")
    assert settings.log_level == "INFO"
    assert settings.database_url is None
    assert settings.secret_values() == []


def test_settings_are_frozen() -> None:
    settings = load_settings(None, {})
    with pytest.raises(ValueError, match="frozen"):
        settings.risk.max_leverage = 10  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        settings.log_level = "DEBUG"  # type: ignore[misc]


def test_yaml_values_load(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
exchange: {api_url: "http://127.0.0.1:8790", ws_url: "ws://127.0.0.1:8790/ws", sandbox: true}
universe:
  symbols: ["BTC/USD:USD"]
  bias_timeframes: ["1d", "4h"]
  entry_timeframes: ["15m", "1h"]
strategy: {name: smc, params: {swing_lookback: 5}}
risk: {max_leverage: 2, risk_per_trade: 0.01}
log_level: debug
data_dir: /var/lib/bastion
database_url: "sqlite:///data/history.db"
""",
    )
    settings = load_settings(path, {})
    assert settings.exchange.api_url == "http://127.0.0.1:8790"
    assert settings.exchange.sandbox is True
    assert settings.universe.symbols == ["BTC/USD:USD"]
    assert settings.universe.bias_timeframes == ["1d", "4h"]
    assert settings.strategy.params == {"swing_lookback": 5}
    assert settings.risk.max_leverage == 2.0
    assert settings.risk.risk_per_trade == 0.01
    assert settings.risk.max_positions == 5  # untouched default
    assert settings.log_level == "DEBUG"
    assert settings.data_dir == Path("/var/lib/bastion")


def test_environment_overrides_yaml_nested(tmp_path: Path) -> None:
    path = _write(tmp_path, "risk:\n  max_leverage: 5\n  risk_per_trade: 0.01\nlog_level: INFO\n")
    settings = load_settings(
        path,
        {
            "BASTION_RISK__MAX_LEVERAGE": "3",
            "BASTION_LOG_LEVEL": "WARNING",
            "BASTION_UNIVERSE__SYMBOLS": '["ETH/USD:USD", "SOL/USD:USD"]',
            "BASTION_TELEGRAM__ALLOWED_CHAT_IDS": "[42]",
        },
    )
    assert settings.risk.max_leverage == 3.0
    assert settings.risk.risk_per_trade == 0.01  # YAML value kept beside the env override
    assert settings.log_level == "WARNING"
    assert settings.universe.symbols == ["ETH/USD:USD", "SOL/USD:USD"]
    assert settings.telegram.allowed_chat_ids == [42]


def test_unrelated_bastion_env_vars_are_ignored() -> None:
    settings = load_settings(
        None,
        {
            "BASTION_TEST_PG_URL": "postgresql://u:p@localhost/test",
            "BASTION_CONFIG": "/etc/bastion/config.yaml",
            "PATH": "/usr/bin",
        },
    )
    assert settings.database_url is None


def test_unknown_top_level_key(tmp_path: Path) -> None:
    errors = _errors(_write(tmp_path, "risk_limitz: 1\n"))
    assert list(errors) == ["risk_limitz"]
    assert "unknown key" in errors["risk_limitz"]


def test_unknown_nested_key_in_yaml(tmp_path: Path) -> None:
    errors = _errors(_write(tmp_path, "risk:\n  max_leveragez: 3\n"))
    assert list(errors) == ["risk.max_leveragez"]


def test_unknown_nested_key_in_environment() -> None:
    errors = _errors(None, {"BASTION_RISK__MAX_LEVERAGEZ": "3"})
    assert list(errors) == ["risk.max_leveragez"]


def test_single_underscore_section_variable_is_reported() -> None:
    errors = _errors(None, {"BASTION_RISK_MAX_LEVERAGE": "3"})
    assert "BASTION_RISK__MAX_LEVERAGE" in errors["risk.max_leverage"]


def test_all_bad_fields_reported_at_once(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
risk_limitz: 1
risk: {max_leverage: 0, risk_per_trade: 0.5}
universe: {symbols: ["BTCUSD"], bias_timeframes: ["3h"]}
health: {port: 70000}
log_level: TRACE
""",
    )
    errors = _errors(path)
    assert set(errors) == {
        "risk_limitz",
        "risk.max_leverage",
        "risk.risk_per_trade",
        "universe.symbols",
        "universe.bias_timeframes",
        "health.port",
        "log_level",
    }


def test_margin_cap_ordering(tmp_path: Path) -> None:
    errors = _errors(_write(tmp_path, "risk: {max_margin_util: 0.3}\n"))
    assert list(errors) == ["allocator.auction_max_margin_util"]
    assert "risk.max_margin_util" in errors["allocator.auction_max_margin_util"]


def test_root_relations_all_reported(tmp_path: Path) -> None:
    path = _write(tmp_path, "allocator: {auction_max_margin_util: 0.6, max_positions: 9}\n")
    assert set(_errors(path)) == {"allocator.auction_max_margin_util", "allocator.max_positions"}


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("risk: {max_margin_util: 1.0}\n", "risk.max_margin_util"),
        ("risk: {max_position_margin_frac: 0.6}\n", "risk.max_position_margin_frac"),
        ("risk: {daily_loss_limit_frac: 0.001}\n", "risk.daily_loss_limit_frac"),
        ("protection: {flatten_after_s: 5}\n", "protection.flatten_after_s"),
        (
            "protection: {adopted_stop_distance_frac: 0.5}\n",
            "protection.adopted_stop_distance_frac",
        ),
        ("universe: {bias_timeframes: ['15m']}\n", "universe.bias_timeframes"),
        ("universe: {symbols: []}\n", "universe.symbols"),
        ("universe: {symbols: ['BTC/USD:USD', 'BTC/USD:USD']}\n", "universe.symbols"),
        ("universe: {entry_timeframes: ['2m']}\n", "universe.entry_timeframes"),
        ("exchange: {ws_url: 'http://x'}\n", "exchange.ws_url"),
        ("database_url: 'mysql://x/y'\n", "database_url"),
        ("telegram: {allowed_chat_ids: [abc]}\n", "telegram.allowed_chat_ids.0"),
    ],
)
def test_invalid_values_name_the_field(tmp_path: Path, text: str, path: str) -> None:
    assert path in _errors(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "path", "var"),
    [
        ("exchange: {api_key: abc}\n", "exchange.api_key", "BASTION_EXCHANGE__API_KEY"),
        ("exchange: {api_secret: abc}\n", "exchange.api_secret", "BASTION_EXCHANGE__API_SECRET"),
        ("telegram: {token: abc}\n", "telegram.token", "BASTION_TELEGRAM__TOKEN"),
    ],
)
def test_secret_in_yaml_is_an_error(tmp_path: Path, text: str, path: str, var: str) -> None:
    errors = _errors(_write(tmp_path, text))
    assert list(errors) == [path]
    assert var in errors[path]


def test_secrets_from_environment() -> None:
    settings = load_settings(
        None,
        {
            "BASTION_EXCHANGE__API_KEY": "key-1234",
            "BASTION_EXCHANGE__API_SECRET": "secret-5678",
            "BASTION_TELEGRAM__TOKEN": "123456:bot-token",
            "BASTION_TELEGRAM__ALLOWED_CHAT_IDS": "[1]",
            "BASTION_DATABASE_URL": "postgresql+psycopg://bastion:pg-pass@db/bastion",
        },
    )
    assert settings.exchange.api_key is not None
    assert settings.exchange.api_key.get_secret_value() == "key-1234"
    assert sorted(settings.secret_values()) == sorted(
        ["key-1234", "secret-5678", "123456:bot-token", "pg-pass"]
    )
    assert "key-1234" not in repr(settings)
    assert "pg-pass" not in repr(settings)

    dump = settings.redacted_dump()
    assert dump["exchange"]["api_key"] == "***"
    assert dump["exchange"]["api_secret"] == "***"
    assert dump["telegram"]["token"] == "***"
    assert dump["database_url"] == "postgresql+psycopg://bastion:***@db/bastion"
    text = repr(dump)
    for secret in settings.secret_values():
        assert secret not in text


def test_redacted_dump_without_secrets() -> None:
    dump = load_settings(None, {}).redacted_dump()
    assert dump["exchange"]["api_key"] is None
    assert dump["telegram"]["token"] is None
    assert dump["risk"]["max_leverage"] == 3.0


def test_api_key_without_secret_is_an_error() -> None:
    errors = _errors(None, {"BASTION_EXCHANGE__API_KEY": "key-1234"})
    assert "BASTION_EXCHANGE__API_SECRET" in errors["exchange.api_secret"]


def test_telegram_token_requires_an_allowlist() -> None:
    assert "telegram.allowed_chat_ids" in _errors(None, {"BASTION_TELEGRAM__TOKEN": "1:abc"})


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    errors = _errors(_write(tmp_path, "risk:\n  max_leverage: 3\n  bad: [1\nlog_level: INFO\n"))
    assert "line 4" in errors["config_file"]


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    errors = _errors(_write(tmp_path, "risk:\n  max_leverage: 3\n  max_leverage: 30\n"))
    assert "duplicate key 'max_leverage'" in errors["config_file"]
    assert "line 3" in errors["config_file"]


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_yaml_is_an_error(tmp_path: Path, text: str) -> None:
    assert "must be a mapping" in _errors(_write(tmp_path, text))["config_file"]


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(_write(tmp_path, "# nothing\n"), {}) == load_settings(None, {})


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    assert "not found" in _errors(tmp_path / "nope.yaml")["config_file"]


def test_bad_json_in_environment_is_an_error() -> None:
    errors = _errors(None, {"BASTION_UNIVERSE__SYMBOLS": "BTC/USD:USD"})
    assert "JSON" in errors["universe"]


def test_format_config_error() -> None:
    err = ConfigError([("risk.max_leverage", "too high"), ("risk_limitz", "unknown key")])
    assert format_config_error(err) == (
        "invalid configuration:\n  risk.max_leverage: too high\n  risk_limitz: unknown key"
    )
    assert str(err) == format_config_error(err)


def test_example_config_loads_and_matches_defaults() -> None:
    settings = load_settings(EXAMPLE, {})
    assert settings == load_settings(None, {})


def _field_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    paths = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths |= _field_paths(annotation, f"{prefix}{name}.")
        else:
            paths.add(f"{prefix}{name}")
    return paths


def _yaml_paths(data: dict, prefix: str = "") -> set[str]:
    paths = set()
    for key, value in data.items():
        if isinstance(value, dict) and value:
            paths |= _yaml_paths(value, f"{prefix}{key}.")
        else:
            paths.add(f"{prefix}{key}")
    return paths


def test_example_config_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    documented = _yaml_paths(yaml.safe_load(text))
    secrets = {"exchange.api_key", "exchange.api_secret", "telegram.token"}
    assert documented == _field_paths(Settings) - secrets
    for secret in secrets:  # mentioned in comments only
        assert secret.rsplit(".", 1)[1] in text
