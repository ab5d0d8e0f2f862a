"""fast_init builds what the dataclass's own __init__ builds, and refuses what it refuses."""

from __future__ import annotations

import dataclasses
from dataclasses import InitVar, dataclass, field

import pytest

from domain.values import fast_init


def _pair() -> tuple[type, type]:
    """The same frozen class twice: with the dataclass's __init__ and with fast_init's."""

    def make() -> type:
        @dataclass(frozen=True, slots=True)
        class Value:
            a: int
            b: str = "b"
            c: list[int] = field(default_factory=lambda: [1])
            d: int = field(default=4, init=False)
            e: list[int] = field(default_factory=list, init=False)
            f: int = field(default=6, kw_only=True)
            g: str = field(kw_only=True, default_factory=lambda: "g")

            def __post_init__(self) -> None:
                if self.a < 0:
                    raise ValueError("a must not be negative")

        return Value

    return make(), fast_init(make())


CALLS: list[tuple[tuple[object, ...], dict[str, object]]] = [
    ((1,), {}),
    ((1, "x"), {}),
    ((1, "x", [9]), {}),
    ((1,), {"c": [], "f": 0, "g": "z"}),
    ((), {"a": 2, "b": "y"}),
]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_the_same_values_as_the_dataclass_init(
    args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    stock, fast = _pair()
    made, expected = fast(*args, **kwargs), stock(*args, **kwargs)
    assert dataclasses.asdict(made) == dataclasses.asdict(expected)
    assert repr(made).split("(", 1)[1] == repr(expected).split("(", 1)[1]
    assert fast(1).c is not fast(1).c  # a factory runs per instance


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((), {}, TypeError),  # a required field missing
        ((1,), {"d": 4}, TypeError),  # init=False
        ((1,), {"z": 0}, TypeError),  # no such field
        ((1, "b", [], 6), {}, TypeError),  # keyword-only given by position
        ((-1,), {}, ValueError),  # __post_init__ still runs
    ],
)
def test_the_same_refusals_as_the_dataclass_init(
    args: tuple[object, ...], kwargs: dict[str, object], error: type[Exception]
) -> None:
    stock, fast = _pair()
    with pytest.raises(error):
        stock(*args, **kwargs)
    with pytest.raises(error):
        fast(*args, **kwargs)


def test_a_value_stays_frozen() -> None:
    _, fast = _pair()
    value = fast(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.a = 2  # type: ignore[misc]


def test_only_frozen_slotted_dataclasses_without_initvars_are_taken() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(slots=True)
    class NotFrozen:
        a: int

    @dataclass(frozen=True, slots=True)
    class WithInitVar:
        a: int
        b: InitVar[int] = 0

    for cls in (NoSlots, NotFrozen, WithInitVar, int):
        with pytest.raises(TypeError):
            fast_init(cls)
