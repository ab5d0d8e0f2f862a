"""``to_step``'s remembered steps and its float shortcut give what the plain arithmetic gives."""

from __future__ import annotations

import random
from decimal import Decimal, InvalidOperation, localcontext

import pytest

from domain.errors import PrecisionError
from domain.precision import _MODES, Number, Rounding, to_decimal, to_step


def reference(value: Number, step: Number, rounding: Rounding) -> Decimal:
    """``to_step`` as first written: divide, round to units, multiply, carry the exponent."""
    step_d = to_decimal(step)
    if step_d <= 0:
        raise PrecisionError(f"step must be positive, got {step!r}")
    units = (to_decimal(value) / step_d).quantize(Decimal(1), rounding=_MODES[rounding])
    result = units * step_d
    exponent = step_d.as_tuple().exponent
    if isinstance(exponent, int) and exponent < 0:
        result = result.quantize(Decimal(1).scaleb(exponent))
    return result


STEPS = [
    Decimal(s)
    for s in (
        "1",
        "0.1",
        "0.10",  # equal to 0.1, another exponent: never confused with it
        "0.01",
        "0.000001",
        "0.0000000001",
        "1E+1",
        "1000",
        "10",
        "0.5",
        "0.05",
        "2.5",
        "5",
    )
]


def outcome(fn: object, *args: object) -> tuple[str, object]:
    try:
        result = fn(*args)  # type: ignore[operator]
    except (PrecisionError, InvalidOperation) as err:
        return "raised", type(err)
    return "value", result.as_tuple()  # the exponent matters, not just the value


def test_matches_the_plain_arithmetic_on_random_values() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        step = rng.choice(STEPS)
        kind = rng.random()
        value: Number
        if kind < 0.5:
            value = rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-12, 6)
        elif kind < 0.7:
            value = rng.randint(-(10**6), 10**6) / 10 ** rng.randint(0, 12)
        elif kind < 0.85:
            value = (rng.randint(-1000, 1000) + 0.5) * float(step)  # ties
        elif kind < 0.95:
            value = Decimal(rng.randint(-(10**9), 10**9)).scaleb(rng.randint(-15, 3))
        else:
            value = rng.choice([0.0, -0.0, 1e-300, 5e-324, 1e22, 1e300, "12.345", 7])
        for rounding in Rounding:
            expected = outcome(reference, value, step, rounding)
            assert outcome(to_step, value, step, rounding) == expected, (value, step, rounding)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_still_refused(value: float) -> None:
    with pytest.raises(PrecisionError):
        to_step(value, Decimal("0.1"), Rounding.NEAREST)


def test_bad_steps_are_still_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(PrecisionError):
            to_step(1.0, Decimal(0), Rounding.DOWN)
        with pytest.raises(PrecisionError):
            to_step(1.0, Decimal("-0.1"), Rounding.DOWN)


def test_a_narrow_context_takes_the_plain_path() -> None:
    step = Decimal("0.01")
    with localcontext() as ctx:
        ctx.prec = 10
        for value in (1234567.891234, 0.123456789012345):
            expected = outcome(reference, value, step, Rounding.NEAREST)
            assert outcome(to_step, value, step, Rounding.NEAREST) == expected
