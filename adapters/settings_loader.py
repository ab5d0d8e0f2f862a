"""Loading of :class:`adapters.settings.Settings`: YAML file, environment, error reporting.

:mod:`adapters.settings` holds the models; this module holds everything that turns a file and an
environment into a validated ``Settings`` or a :class:`ConfigError`: the strict YAML reader,
the secrets check, the ``BASTION_`` misnesting check, the two settings sources and the
translation of pydantic errors into ``(dotted path, reason)`` pairs.

At module level, imports go one way only: this module imports :mod:`adapters.settings`.
That module re-exports ``ConfigError``, ``format_config_error`` and ``load_settings`` through a
module ``__getattr__`` and reaches :func:`settings_sources` with an import inside
``Settings.settings_customise_sources``; both imports run only when called, after the two modules
are fully initialised, so either module may be imported first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsError,
)
from pydantic_settings.sources.utils import parse_env_vars

from adapters.settings import (
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    SECRET_FIELDS,
    Settings,
    _env_var,
    _RelationError,
)

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


def settings_sources(
    settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource
) -> tuple[PydanticBaseSettingsSource, ...]:
    """Explicit kwargs, then the environment, then the YAML data of the load in progress.

    Outside :func:`load_settings` the environment is ``os.environ`` and there is no YAML data.
    """
    inputs = _INPUTS.get()
    environ, data = inputs if inputs is not None else (os.environ, {})
    return init_settings, _EnvSource(settings_cls, environ), _YamlSource(settings_cls, data)


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
