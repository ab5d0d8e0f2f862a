"""Rounding of prices and quantities to an instrument's grid.

Everything that reaches an exchange goes through :func:`to_step`: one function, exact ``Decimal``
arithmetic, an explicit direction. Floats are accepted only as input and converted through their
shortest ``repr`` so that ``0.1`` becomes ``Decimal("0.1")`` and not its binary expansion.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from domain.errors import PrecisionError

Number = Decimal | int | float | str


class Rounding(StrEnum):
    """Direction of rounding to a step."""

    DOWN = "down"  # toward minus infinity
    UP = "up"  # toward plus infinity
    NEAREST = "nearest"  # half to even


_MODES = {
    Rounding.DOWN: ROUND_FLOOR,
    Rounding.UP: ROUND_CEILING,
    Rounding.NEAREST: ROUND_HALF_EVEN,
}


def to_decimal(value: Number) -> Decimal:
    """Convert without float drift; rejects NaN and infinities."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, float):
        result = Decimal(repr(value))
    else:
        result = Decimal(value)
    if not result.is_finite():
        raise PrecisionError(f"not a finite number: {value!r}")
    return result


def to_step(value: Number, step: Number, rounding: Rounding) -> Decimal:
    """Round ``value`` to a multiple of ``step`` in the given direction.

    The result carries the step's exponent (``to_step(1.23456, "0.01", DOWN) == Decimal("1.23")``),
    so its string form is exactly what an exchange expects.
    """
    step_d = to_decimal(step)
    if step_d <= 0:
        raise PrecisionError(f"step must be positive, got {step!r}")
    units = (to_decimal(value) / step_d).quantize(Decimal(1), rounding=_MODES[rounding])
    result = units * step_d
    exponent = step_d.as_tuple().exponent
    if isinstance(exponent, int) and exponent < 0:
        result = result.quantize(Decimal(1).scaleb(exponent))
    return result


def is_multiple(value: Number, step: Number) -> bool:
    """True when ``value`` lies exactly on the grid of ``step``."""
    step_d = to_decimal(step)
    return to_decimal(value) % step_d == 0
