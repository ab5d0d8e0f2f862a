from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import PrecisionError
from domain.models import Instrument, PositionSide
from domain.precision import Rounding, is_multiple, to_decimal, to_step

XBT = Instrument("PF_XBTUSD", "BTC", "USD", Decimal("0.5"), Decimal("0.0001"), Decimal("0.0001"))


def test_floats_convert_without_binary_drift() -> None:
    assert to_decimal(0.1) == Decimal("0.1")
    assert to_step(0.1 + 0.2, "0.1", Rounding.NEAREST) == Decimal("0.3")


@pytest.mark.parametrize(
    ("value", "rounding", "expected"),
    [
        ("1.23456", Rounding.DOWN, "1.23"),
        ("1.23456", Rounding.UP, "1.24"),
        ("1.235", Rounding.NEAREST, "1.24"),
        ("1.225", Rounding.NEAREST, "1.22"),
        ("-1.231", Rounding.DOWN, "-1.24"),
        ("5", Rounding.DOWN, "5.00"),
    ],
)
def test_to_step(value: str, rounding: Rounding, expected: str) -> None:
    result = to_step(value, "0.01", rounding)
    assert str(result) == expected


@given(
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(10**7), places=8),
    st.sampled_from(["0.5", "0.0001", "1", "0.001", "25"]),
    st.sampled_from(list(Rounding)),
)
def test_rounding_lands_on_the_grid_within_one_step(value: Decimal, step: str, r: Rounding) -> None:
    result = to_step(value, step, r)
    assert is_multiple(result, step)
    assert abs(result - value) < Decimal(step)
    if r is Rounding.DOWN:
        assert result <= value
    if r is Rounding.UP:
        assert result >= value


def test_order_qty_refuses_sizes_below_minimum() -> None:
    assert XBT.order_qty(Decimal("0.00019")) == Decimal("0.0001")
    with pytest.raises(PrecisionError):
        XBT.order_qty(Decimal("0.00009"))


def test_stop_rounding_only_tightens() -> None:
    assert XBT.stop_price(Decimal("100.2"), PositionSide.LONG) == Decimal("100.5")
    assert XBT.stop_price(Decimal("100.2"), PositionSide.SHORT) == Decimal("100.0")


@pytest.mark.parametrize("bad", ["NaN", "Infinity"])
def test_non_finite_values_are_refused(bad: str) -> None:
    with pytest.raises(PrecisionError):
        to_decimal(bad)


def test_instrument_rejects_non_positive_grid() -> None:
    with pytest.raises(PrecisionError):
        Instrument("X", "B", "Q", Decimal(0), Decimal(1), Decimal(1))
