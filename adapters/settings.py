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
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from pydantic_settings.sources.utils import parse_env_vars

ENV_PREFIX = "BASTION_"
ENV_NESTED_DELIMITER = "__"

# Timeframe name -> length in minutes. The only timeframes the strategy layer understands.
TIMEFRAME_MINUTES: dict[str, int] = {
    "1m": 1,
    "5m": 5,
    "15m": 15,
    "30m": 30,
    "1h": 60,
    "4h": 240,
    "12h": 720,
    "1d": 1440,
}

DEFAULT_SYMBOLS: tuple[str, ...] = ("BTC/USD:USD", "ETH/USD:USD", "SOL/USD:USD")

# (section, field) pairs that may only come from the environment.
SECRET_FIELDS: tuple[tuple[str, str], ...] = (
    ("exchange", "api_key"),
    ("exchange", "api_secret"),
    ("telegram", "token"),
)

_SYMBOL_RE = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9]+(:[A-Za-z0-9]+(-[A-Za-z0-9]+)*)?$")
_EXCHANGE_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")

# Inputs for the Settings construction in progress: (environment, YAML data). See load_settings.
_INPUTS: ContextVar[tuple[Mapping[str, str], dict[str, Any]] | None] = ContextVar(
    "bastion_settings_inputs", default=None
)


class ConfigError(Exception):
    """Invalid configuration; ``errors`` holds ``(dotted field path, reason)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors: list[tuple[str, str]] = list(errors)
        super().__init__(format_config_error(self))

    def __str__(self) -> str:
        return format_config_error(self)


def format_config_error(err: ConfigError) -> str:
    """Render a ConfigError as ``invalid configuration:`` and one indented line per problem."""
    lines = ["invalid configuration:"]
    lines.extend(f"  {path or '<root>'}: {reason}" for path, reason in err.errors)
    return "\n".join(lines)


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

    @model_validator(mode="after")
    def _check_relations(self) -> RiskSettings:
        problems: list[tuple[str, str]] = []
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


class ProtectionSettings(_Section):
    """Protection monitor: stop verification and the escalation ladder."""

    check_interval_s: float = Field(default=5.0, gt=0)
    stop_ack_timeout_s: float = Field(default=10.0, gt=0)
    retry_backoff_s: float = Field(default=2.0, gt=0)
    max_stop_retries: int = Field(default=3, ge=0)
    flatten_after_s: float = Field(default=60.0, gt=0)
    quarantine_alert_interval_s: float = Field(default=60.0, gt=0)
    adopted_stop_distance_frac: float = Field(default=0.05, gt=0, lt=0.5)

    @model_validator(mode="after")
    def _check_relations(self) -> ProtectionSettings:
        problems: list[tuple[str, str]] = []
        if self.flatten_after_s <= self.stop_ack_timeout_s:
            problems.append(("flatten_after_s", "must be > protection.stop_ack_timeout_s"))
        if self.flatten_after_s <= self.check_interval_s:
            problems.append(("flatten_after_s", "must be > protection.check_interval_s"))
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


# ---------------------------------------------------------------------------------------------
# Root
# ---------------------------------------------------------------------------------------------


class _EnvSource(EnvSettingsSource):
    """EnvSettingsSource reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class _YamlSource(PydanticBaseSettingsSource):
    """The already-parsed YAML mapping, passed through unchanged (keys are case-sensitive)."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: the whole mapping is returned by ``__call__``."""
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


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
    data_dir: Path = Path("data")
    log_dir: Path = Path("logs")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    database_url: str | None = None

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
        inputs = _INPUTS.get()
        environ, data = inputs if inputs is not None else (os.environ, {})
        return init_settings, _EnvSource(settings_cls, environ), _YamlSource(settings_cls, data)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
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
        password = _url_password(self.database_url)
        if password:
            values.append(password)
        return values

    def redacted_dump(self) -> dict[str, Any]:
        """``model_dump(mode="json")`` with each secret shown as ``"***"`` (or None if unset)."""
        data = self.model_dump(mode="json")
        for section, name in SECRET_FIELDS:
            value = getattr(getattr(self, section), name)
            data[section][name] = "***" if value is not None else None
        if self.database_url is not None:
            data["database_url"] = _mask_url_password(self.database_url)
        return data


def _url_password(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    userinfo = f"{parts.username}:***" if parts.username else ":***"
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("config_file", f"file not found: {path}")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([("config_file", f"cannot read {path}: {exc}")]) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            [("config_file", f"YAML syntax error in {path}{where}: {problem}")]
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            [("config_file", f"top level of {path} must be a mapping, got {type(data).__name__}")]
        )
    bad_keys = [key for key in data if not isinstance(key, str)]
    if bad_keys:
        raise ConfigError(
            [(str(key), "unknown key (keys must be field names)") for key in bad_keys]
        )
    return data


def _split_secrets(data: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Report secrets found in the YAML data and return the data without them."""
    problems = []
    cleaned = dict(data)
    for section, name in SECRET_FIELDS:
        block = cleaned.get(section)
        if isinstance(block, Mapping) and name in block:
            problems.append(
                (
                    f"{section}.{name}",
                    "secrets must not be in the config file; remove it and set "
                    f"{_env_var(section, name)} in the environment",
                )
            )
            cleaned[section] = {k: v for k, v in block.items() if k != name}
    return cleaned, problems


def _misnested_env(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """Variables like BASTION_RISK_MAX_LEVERAGE that name a section field with one underscore."""
    problems = []
    sections = {
        name: field.annotation
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }
    for var in environ:
        upper = var.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        rest = upper[len(ENV_PREFIX) :].lower()
        for section, model in sections.items():
            head = f"{section}_"
            if rest.startswith(head) and not rest.startswith(section + ENV_NESTED_DELIMITER):
                field = rest[len(head) :]
                if field in model.model_fields:
                    good = _env_var(section, field)
                    problems.append((f"{section}.{field}", f"{var} is ignored; use {good}"))
    return problems


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(str(part))
        elif "[" in part or part in _INTERNAL_LOC_PARTS:
            continue
        else:
            parts.append(part)
    return ".".join(parts)


_INTERNAL_LOC_PARTS = frozenset({"lax-or-strict", "json-or-python", "is-instance"})


def _iter_validation_errors(exc: ValidationError) -> Iterator[tuple[str, str]]:
    for error in exc.errors():
        path = _loc_to_path(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, _RelationError):
            for sub_path, reason in cause.problems:
                yield (f"{path}.{sub_path}" if path else sub_path), reason
        elif error["type"] == "extra_forbidden":
            yield path, "unknown key (misspelt or not supported)"
        else:
            yield path, error["msg"].removeprefix("Value error, ")


def _settings_error_problem(exc: SettingsError) -> tuple[str, str]:
    """pydantic-settings stops at the first environment value it cannot decode (bad JSON)."""
    match = re.search(r'field "([^"]+)"', str(exc))
    path = match.group(1) if match else "environment"
    cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
    return path, (
        f"cannot decode the value from the environment{cause} "
        f"(lists and mappings in {ENV_PREFIX}* variables must be JSON)"
    )


def _dedupe(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(problems))


def load_settings(
    config_path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load and validate the configuration; raise ConfigError listing every problem found.

    ``config_path`` None means defaults plus environment only. ``environ`` defaults to
    ``os.environ``.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    if config_path is not None:
        data, problems = _split_secrets(_read_yaml(Path(config_path)))
    problems.extend(_misnested_env(env))
    token = _INPUTS.set((env, data))
    try:
        settings = Settings()
    except ValidationError as exc:
        problems.extend(_iter_validation_errors(exc))
    except SettingsError as exc:
        problems.append(_settings_error_problem(exc))
    else:
        if not problems:
            return settings
    finally:
        _INPUTS.reset(token)
    raise ConfigError(_dedupe(problems))
