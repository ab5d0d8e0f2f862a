"""Configuration: a YAML file plus ``BASTION_`` environment overrides, validated at load.

Precedence (highest first): environment variables, YAML file, defaults (keyword arguments
given to ``Settings(...)`` directly, as tests may do, beat all three). Nested fields are
addressed with ``__`` (``BASTION_RISK__MAX_LEVERAGE=3``); lists and dicts from the environment
are JSON (``BASTION_UNIVERSE__SYMBOLS='["BTC/USD:USD"]'``).

Secrets (exchange ``api_key``/``api_secret``, ``telegram.token``) are read only from the
environment (or a systemd EnvironmentFile); a secret in the YAML file is a configuration error.

Every model forbids unknown keys, so a misspelt limit fails loudly instead of being ignored.
Environment variables that start with ``BASTION_`` but do not name a top-level field (for
example ``BASTION_CONFIG`` or ``BASTION_TEST_PG_URL``) are ignored, with one exception: a
variable that names a section field with a single underscore (``BASTION_RISK_MAX_LEVERAGE``
instead of ``BASTION_RISK__MAX_LEVERAGE``) is reported as an error, since it is almost certainly
a typo that would otherwise be dropped silently.

This module holds the models. Reading and validating a file and an environment lives in
:mod:`adapters.settings_loader`, which imports this module; ``ConfigError``,
``format_config_error`` and ``load_settings`` are re-exported here through a module
``__getattr__`` (resolved on first use, after both modules are initialised), so
``from adapters.settings import load_settings`` works whichever module is imported first.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from domain.timeframes import MINUTE_MS, TIMEFRAME_MS

if TYPE_CHECKING:
    from adapters.settings_loader import ConfigError, format_config_error, load_settings

ENV_PREFIX = "BASTION_"
ENV_NESTED_DELIMITER = "__"

# Timeframe name -> length in minutes. The only timeframes the strategy layer understands.
TIMEFRAME_MINUTES: dict[str, int] = {tf: ms // MINUTE_MS for tf, ms in TIMEFRAME_MS.items()}

DEFAULT_SYMBOLS: tuple[str, ...] = ("BTC/USD:USD", "ETH/USD:USD", "SOL/USD:USD")

# (section, field) pairs that may only come from the environment.
SECRET_FIELDS: tuple[tuple[str, str], ...] = (
    ("exchange", "api_key"),
    ("exchange", "api_secret"),
    ("telegram", "token"),
)

_SYMBOL_RE = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9]+(:[A-Za-z0-9]+(-[A-Za-z0-9]+)*)?$")
_EXCHANGE_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")

# Names defined in adapters.settings_loader and served from here by __getattr__.
_LOADER_EXPORTS = frozenset({"ConfigError", "format_config_error", "load_settings"})


def __getattr__(name: str) -> Any:
    """Re-export the loader's public names without importing it at module load."""
    if name in _LOADER_EXPORTS:
        from adapters import settings_loader  # noqa: PLC0415 - the loader imports this module

        return getattr(settings_loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _RelationError(ValueError):
    """Cross-field violations found by a model validator, with paths relative to that model."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {reason}" for path, reason in problems))


def _fail(path: str, reason: str) -> None:
    raise _RelationError([(path, reason)])


def _fail_all(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise _RelationError(problems)


def _env_var(section: str, name: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}{ENV_NESTED_DELIMITER}{name.upper()}"


def _url_with_scheme(*schemes: str) -> AfterValidator:
    def check(value: str) -> str:
        if urlsplit(value).scheme not in schemes:
            raise ValueError(f"must be a {' or '.join(f'{s}://' for s in schemes)} URL")
        return value

    return AfterValidator(check)


def _blank_secret_to_none(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not value.get_secret_value().strip():
        return None
    return value


_HttpUrl = Annotated[str, _url_with_scheme("http", "https")]
_WsUrl = Annotated[str, _url_with_scheme("ws", "wss")]
# An unset or blank secret is None; SecretStr keeps it out of repr and dumps.
_Secret = Annotated[SecretStr | None, AfterValidator(_blank_secret_to_none)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


class ExchangeSettings(_Section):
    """Venue connection. API keys come only from the environment."""

    id: str = "krakenfutures"
    api_url: _HttpUrl | None = None
    ws_url: _WsUrl | None = None
    api_key: _Secret = None
    api_secret: _Secret = None
    sandbox: bool = False

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _EXCHANGE_ID_RE.match(value):
            raise ValueError("must be a lowercase ccxt exchange id such as 'krakenfutures'")
        return value

    @model_validator(mode="after")
    def _check_key_pair(self) -> ExchangeSettings:
        if (self.api_key is None) != (self.api_secret is None):
            missing = "api_secret" if self.api_secret is None else "api_key"
            _fail(
                missing, f"api_key and api_secret go together; set {_env_var('exchange', missing)}"
            )
        return self


class UniverseSettings(_Section):
    """Traded symbols and the timeframes the strategy reads."""

    symbols: list[str] = Field(default_factory=lambda: list(DEFAULT_SYMBOLS))
    bias_timeframes: list[str] = Field(default_factory=lambda: ["4h"])
    entry_timeframes: list[str] = Field(default_factory=lambda: ["15m"])

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must list at least one symbol")
        bad = [s for s in value if not _SYMBOL_RE.match(s)]
        if bad:
            raise ValueError(
                f"not ccxt unified symbols (BASE/QUOTE:SETTLE, e.g. BTC/USD:USD): {bad}"
            )
        dupes = sorted({s for s in value if value.count(s) > 1})
        if dupes:
            raise ValueError(f"duplicate symbols: {dupes}")
        return value

    @field_validator("bias_timeframes", "entry_timeframes")
    @classmethod
    def _check_timeframes(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must list at least one timeframe")
        unknown = [tf for tf in value if tf not in TIMEFRAME_MINUTES]
        if unknown:
            raise ValueError(f"unknown timeframes {unknown}; known: {list(TIMEFRAME_MINUTES)}")
        dupes = sorted({tf for tf in value if value.count(tf) > 1})
        if dupes:
            raise ValueError(f"duplicate timeframes: {dupes}")
        return value

    @model_validator(mode="after")
    def _check_timeframe_order(self) -> UniverseSettings:
        shortest_bias = min(self.bias_timeframes, key=TIMEFRAME_MINUTES.__getitem__)
        longest_entry = max(self.entry_timeframes, key=TIMEFRAME_MINUTES.__getitem__)
        if TIMEFRAME_MINUTES[shortest_bias] <= TIMEFRAME_MINUTES[longest_entry]:
            _fail(
                "bias_timeframes",
                "every bias timeframe must be longer than every entry timeframe "
                f"({shortest_bias} <= {longest_entry})",
            )
        return self


class StrategySettings(_Section):
    """Which strategy runs; ``params`` is validated by the strategy itself."""

    name: str = Field(default="smc", min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class RiskSettings(_Section):
    """Hard limits enforced by the Risk actor."""

    risk_per_trade: float = Field(default=0.005, gt=0, le=0.05)
    max_leverage: float = Field(default=3.0, ge=1, le=50)
    max_margin_util: float = Field(default=0.5, gt=0, lt=1)
    max_position_margin_frac: float = Field(default=0.15, gt=0, lt=1)
    max_positions: int = Field(default=5, ge=1)
    daily_loss_limit_frac: float = Field(default=0.03, gt=0, lt=1)
    loss_streak_limit: int = Field(default=4, ge=1)
    cooldown_minutes: float = Field(default=60.0, ge=0)
    min_notional_usd: float = Field(default=10.0, ge=0)
    stale_after_s: float = Field(default=60.0, gt=0)
    max_loss_per_trade_frac: float | None = Field(default=None, gt=0, lt=1)
    margin_buffer_frac: float = Field(default=0.1, ge=0, lt=1)
    fee_rate: float = Field(default=0.0005, ge=0, lt=0.01)
    stop_slippage_frac: float = Field(default=0.001, ge=0, lt=0.1)

    @model_validator(mode="after")
    def _check_relations(self) -> RiskSettings:
        problems: list[tuple[str, str]] = []
        cap = self.max_loss_per_trade_frac
        if cap is not None and cap < self.risk_per_trade:
            problems.append(("max_loss_per_trade_frac", "must be >= risk.risk_per_trade"))
        if self.max_position_margin_frac > self.max_margin_util:
            problems.append(("max_position_margin_frac", "must be <= risk.max_margin_util"))
        if self.daily_loss_limit_frac < self.risk_per_trade:
            problems.append(
                ("daily_loss_limit_frac", "must be >= risk.risk_per_trade (one loss would hit it)")
            )
        _fail_all(problems)
        return self


class AllocatorSettings(_Section):
    """Auction allocator: how signals compete for limited margin and position slots."""

    auction_max_margin_util: float = Field(default=0.35, gt=0, lt=1)
    max_positions: int = Field(default=4, ge=1)
    swap_threshold: float = Field(default=0.25, ge=0)
    max_opens_per_cycle: int = Field(default=2, ge=1)
    max_closes_per_cycle: int = Field(default=1, ge=0)
    max_per_cluster: int = Field(default=2, ge=1)
    max_net_long: int = Field(default=3, ge=0)
    max_net_short: int = Field(default=3, ge=0)
    collect_window_ms: int = Field(default=2000, ge=0, le=60_000)
    pnl_weight: float = Field(default=0.1, ge=0)
    min_hold_ms: int = Field(default=15 * 60_000, ge=0)


class ProtectionSettings(_Section):
    """Protection monitor: stop verification and the escalation ladder (actors/ladder.py)."""

    check_interval_s: float = Field(default=5.0, gt=0)
    naked_grace_s: float = Field(default=2.0, gt=0)
    stop_ack_timeout_s: float = Field(default=10.0, gt=0)
    retry_backoff_s: float = Field(default=2.0, gt=0)
    max_stop_retries: int = Field(default=3, ge=0)
    widen_frac: float = Field(default=0.01, gt=0, lt=0.2)
    flatten_after_s: float = Field(default=60.0, gt=0)
    max_flatten_attempts: int = Field(default=3, ge=1)
    quarantine_alert_interval_s: float = Field(default=60.0, gt=0)
    adopted_stop_distance_frac: float = Field(default=0.05, gt=0, lt=0.5)

    @model_validator(mode="after")
    def _check_relations(self) -> ProtectionSettings:
        problems: list[tuple[str, str]] = []
        if self.flatten_after_s <= self.stop_ack_timeout_s:
            problems.append(("flatten_after_s", "must be > protection.stop_ack_timeout_s"))
        if self.flatten_after_s <= self.check_interval_s:
            problems.append(("flatten_after_s", "must be > protection.check_interval_s"))
        if self.flatten_after_s <= self.naked_grace_s:
            problems.append(("flatten_after_s", "must be > protection.naked_grace_s"))
        _fail_all(problems)
        return self


class KillSwitchSettings(_Section):
    """Kill switch. The latch persisted in the position store wins over this value."""

    latched_on_start: bool = False


class TelegramSettings(_Section):
    """Telegram control and alerts; disabled while ``token`` is unset."""

    token: _Secret = None
    allowed_chat_ids: list[int] = Field(default_factory=list)
    allowed_user_ids: list[int] = Field(default_factory=list)
    api_base_url: _HttpUrl = "https://api.telegram.org/bot"
    confirm_timeout_s: float = Field(default=60.0, ge=1, le=600)
    alert_dedup_window_s: float = Field(default=300.0, ge=0)
    alert_min_interval_s: float = Field(default=1.0, ge=0, le=60)
    alert_give_up_s: float = Field(default=900.0, gt=0)

    @model_validator(mode="after")
    def _check_allowlist(self) -> TelegramSettings:
        if self.token is not None and not (self.allowed_chat_ids or self.allowed_user_ids):
            _fail(
                "allowed_chat_ids",
                "a token is set but nobody is allowed; set allowed_chat_ids and/or "
                "allowed_user_ids so strangers cannot command the bot",
            )
        return self


class HealthSettings(_Section):
    """HTTP health endpoint."""

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8787, ge=0, le=65535)


class HistorySettings(_Section):
    """The history database's writer and retention (the URL is the root ``database_url``)."""

    queue_size: int = Field(default=10_000, ge=100)
    batch_size: int = Field(default=500, ge=1, le=10_000)
    flush_interval_s: float = Field(default=0.5, gt=0, le=60)
    retry_max_s: float = Field(default=30.0, gt=0, le=3600)
    account_snapshot_interval_s: float = Field(default=60.0, ge=0)
    candles_keep_days: float | None = Field(default=90.0, gt=0)
    events_keep_days: float | None = Field(default=365.0, gt=0)
    prune_interval_s: float = Field(default=3600.0, gt=0)
    prune_batch: int = Field(default=5000, ge=1, le=100_000)


# ---------------------------------------------------------------------------------------------
# Root
# ---------------------------------------------------------------------------------------------


class Settings(BaseSettings):
    """The whole configuration. Frozen; build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        env_file=None,
        secrets_dir=None,
    )

    exchange: ExchangeSettings = Field(default_factory=ExchangeSettings)
    universe: UniverseSettings = Field(default_factory=UniverseSettings)
    strategy: StrategySettings = Field(default_factory=StrategySettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    allocator: AllocatorSettings = Field(default_factory=AllocatorSettings)
    protection: ProtectionSettings = Field(default_factory=ProtectionSettings)
    kill_switch: KillSwitchSettings = Field(default_factory=KillSwitchSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    data_dir: Path = Path("data")
    log_dir: Path = Path("logs")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    database_url: str | None = Field(default=None, repr=False)  # may hold a password
    paper_database_url: str | None = Field(default=None, repr=False)  # paper's, kept apart

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit kwargs, then environment, then the YAML data; no dotenv or secrets dir."""
        from adapters.settings_loader import settings_sources  # noqa: PLC0415 - see __getattr__

        return settings_sources(settings_cls, init_settings)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url", "paper_database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme.split("+", 1)[0]
        if scheme not in ("sqlite", "postgresql"):
            raise ValueError(
                "must be an SQLAlchemy URL for sqlite or postgresql "
                "(e.g. postgresql+psycopg://user@host/db)"
            )
        return value

    @model_validator(mode="after")
    def _check_relations(self) -> Settings:
        problems: list[tuple[str, str]] = []
        if self.allocator.auction_max_margin_util >= self.risk.max_margin_util:
            problems.append(("allocator.auction_max_margin_util", "must be < risk.max_margin_util"))
        if self.allocator.max_positions > self.risk.max_positions:
            problems.append(("allocator.max_positions", "must be <= risk.max_positions"))
        _fail_all(problems)
        return self

    def secret_values(self) -> list[str]:
        """The non-empty secret strings (API keys, bot token, database password) for redaction."""
        values: list[str] = []
        for secret in (self.exchange.api_key, self.exchange.api_secret, self.telegram.token):
            if secret is not None and secret.get_secret_value():
                values.append(secret.get_secret_value())
        for url in (self.database_url, self.paper_database_url):
            values.extend(_url_passwords(url))
        return values

    def redacted_dump(self) -> dict[str, Any]:
        """``model_dump(mode="json")`` with each secret shown as ``"***"`` (or None if unset)."""
        data = self.model_dump(mode="json")
        for section, name in SECRET_FIELDS:
            value = getattr(getattr(self, section), name)
            data[section][name] = "***" if value is not None else None
        for key in ("database_url", "paper_database_url"):
            if data[key] is not None:
                data[key] = _mask_url_password(data[key])
        return data


def history_url(settings: Settings, mode: str) -> str:
    """The history database URL for ``mode`` (``live``/``paper``).

    ``database_url`` for live and ``paper_database_url`` for paper when set (paper trades never
    land in the live books), else SQLite at ``<data_dir>/<mode>/history.db`` next to that mode's
    position store.
    """
    configured = settings.paper_database_url if mode == "paper" else settings.database_url
    if configured is not None:
        return configured
    return f"sqlite:///{(settings.data_dir / mode / 'history.db').as_posix()}"


_QUERY_SECRETS = frozenset({"password", "sslpassword"})


def _url_passwords(url: str | None) -> list[str]:
    """The passwords in ``url``: its userinfo and ``password``-like query parameters."""
    if url is None:
        return []
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
    except ValueError:
        return []
    found += [v for k, v in parse_qsl(parts.query) if k.lower() in _QUERY_SECRETS and v]
    return found


def _mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        userinfo = f"{parts.username}:***" if parts.username else ":***"
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{userinfo}@{host}")
    query = [(k, "***" if k.lower() in _QUERY_SECRETS else v) for k, v in parse_qsl(parts.query)]
    return (
        urlunsplit(parts._replace(query=urlencode(query, safe="*"))) if query else urlunsplit(parts)
    )


__all__ = [
    "DEFAULT_SYMBOLS",
    "ENV_NESTED_DELIMITER",
    "ENV_PREFIX",
    "SECRET_FIELDS",
    "TIMEFRAME_MINUTES",
    "AllocatorSettings",
    "ConfigError",
    "ExchangeSettings",
    "HealthSettings",
    "HistorySettings",
    "KillSwitchSettings",
    "ProtectionSettings",
    "RiskSettings",
    "Settings",
    "StrategySettings",
    "TelegramSettings",
    "UniverseSettings",
    "format_config_error",
    "history_url",
    "load_settings",
]
