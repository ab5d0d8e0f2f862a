"""Column types shared by the models and the migrations (the migrations import only this module).

- :class:`Money`: an exact decimal with 10 fractional digits and at most 28 digits in all.
  PostgreSQL stores it as ``NUMERIC(28, 10)``. SQLite has no exact decimal type (its NUMERIC
  affinity turns text into a float and keeps 15 significant digits), so there it is stored as
  the canonical decimal string in a ``VARCHAR`` column and read back as ``Decimal``. Values are
  rounded half away from zero to 10 places before they are written, on both backends, so both
  return the same number; more than 18 integer digits is an error, as it is in PostgreSQL.
  On SQLite, sort and sum these columns in Python, not in SQL (text order is not numeric order).
- :data:`Json`: ``JSONB`` on PostgreSQL, JSON text on SQLite.
- :data:`Id`: an auto-incrementing surrogate key; ``BIGINT`` on PostgreSQL and ``INTEGER`` on
  SQLite, where only ``INTEGER PRIMARY KEY`` is an alias of the rowid.
- Timestamps are ``BIGINT`` milliseconds since the Unix epoch (UTC), as everywhere in Bastion.

Changing how an existing type is stored needs a new migration; never edit these in place.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any

from sqlalchemy import JSON, BigInteger, Dialect, Integer, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

MONEY_PRECISION = 28
MONEY_SCALE = 10
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
_MAX_ABS = Decimal(10) ** (MONEY_PRECISION - MONEY_SCALE)

Id = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")


class Money(TypeDecorator[Decimal]):
    """An exact ``Decimal``: NUMERIC(28, 10) on PostgreSQL, its decimal string on SQLite."""

    impl = Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(MONEY_PRECISION + 2))
        return dialect.type_descriptor(Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        exact = quantize(value)
        return format(exact, "f") if dialect.name == "sqlite" else exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return quantize(value)

    @property
    def python_type(self) -> type[Decimal]:
        return Decimal


def quantize(value: Any) -> Decimal:
    """``value`` as a Decimal with exactly :data:`MONEY_SCALE` fractional digits.

    Floats are refused (they are already inexact); ints, strings and Decimals are accepted.
    """
    if isinstance(value, float | bool):
        raise TypeError(f"money values must be Decimal, int or str, not {type(value).__name__}")
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError) as err:
        raise ValueError(f"not a decimal number: {value!r}") from err
    if not number.is_finite():
        raise ValueError(f"not a finite decimal number: {value!r}")
    exact: Decimal | None = None
    if number.adjusted() < MONEY_PRECISION - MONEY_SCALE:
        with localcontext(prec=MONEY_PRECISION + 2):  # rounding may carry into a new digit
            exact = number.quantize(_QUANTUM, rounding=ROUND_HALF_UP)
    if exact is None or abs(exact) >= _MAX_ABS:
        raise ValueError(
            f"{value!r} does not fit NUMERIC({MONEY_PRECISION}, {MONEY_SCALE}) "
            f"(at most {MONEY_PRECISION - MONEY_SCALE} integer digits)"
        )
    return exact


__all__ = ["MONEY_PRECISION", "MONEY_SCALE", "Id", "Json", "Money", "quantize"]
