"""Rounding of prices and quantities to an instrument's grid.

Everything that reaches an exchange goes through :func:`to_step`: one function, exact ``Decimal``
arithmetic, an explicit direction. Floats are accepted only as input and converted through their
shortest ``repr`` so that ``0.1`` becomes ``Decimal("0.1")`` and not its binary expansion.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, getcontext
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
    entry = _STEPS.get(id(step))
    if entry is not None and entry[0] is step:
        _, step_d, quantum, decade = entry
    else:
        step_d, quantum, decade = _step_of(step)
    mode = _MODES[rounding]
    if decade is not None and type(value) is float and getcontext().prec >= _FLOAT_DIGITS:
        # a float's shortest repr has at most 17 digits, so dividing it by a power of ten is
        # exact and the rounding below is the only one: quantizing to the step is the same
        exact = Decimal(repr(value))
        if not exact.is_finite():
            raise PrecisionError(f"not a finite number: {value!r}")
        return exact.quantize(decade, rounding=mode)
    units = (to_decimal(value) / step_d).quantize(_ONE, rounding=mode)
    result = units * step_d
    if quantum is not None:
        result = result.quantize(quantum)
    return result


_ONE = Decimal(1)
_FLOAT_DIGITS = 17  # significant digits of the longest shortest-repr of a float
_STEPS_MAX = 1024
# id(step) -> (step, step as Decimal, quantum of its exponent or None, the step when it is a
# power of ten else None): what to_step derives from a step, remembered for the Decimal steps
# it sees (instruments' grids). The entry holds the step itself, so its id cannot be reused
# while the entry lives; a hit is checked by identity, never by value (Decimal("0.1") ==
# Decimal("0.10") but their exponents differ).
_STEPS: dict[int, tuple[object, Decimal, Decimal | None, Decimal | None]] = {}


def _step_of(step: Number) -> tuple[Decimal, Decimal | None, Decimal | None]:
    step_d = to_decimal(step)
    if step_d <= 0:
        raise PrecisionError(f"step must be positive, got {step!r}")
    _, digits, exponent = step_d.as_tuple()
    quantum = _ONE.scaleb(exponent) if isinstance(exponent, int) and exponent < 0 else None
    decade = step_d if digits == (1,) else None
    if isinstance(step, Decimal):
        if len(_STEPS) >= _STEPS_MAX:
            _STEPS.clear()
        _STEPS[id(step)] = (step, step_d, quantum, decade)
    return step_d, quantum, decade


def is_multiple(value: Number, step: Number) -> bool:
    """True when ``value`` lies exactly on the grid of ``step``."""
    step_d = to_decimal(step)
    return to_decimal(value) % step_d == 0
