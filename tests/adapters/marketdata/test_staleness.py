"""StalenessTracker: per-symbol silence on an injected clock; transitions reported once."""

from __future__ import annotations

import pytest

from adapters.marketdata import StalenessTracker


def test_symbols_start_stale_and_the_first_message_makes_them_fresh() -> None:
    t = StalenessTracker(["A", "B"], threshold_ms=1_000)
    assert t.stale("A", 0)
    assert t.stale("unknown", 0)
    assert t.last_seen("A") is None
    assert t.touch("A", 100) is True
    assert t.touch("A", 200) is False
    assert not t.stale("A", 1_200)  # exactly the threshold: still fresh
    assert t.stale("A", 1_201)
    assert t.expired(1_000) == []  # B was never seen: no report, it is stale from the start


def test_going_stale_is_reported_once_and_a_message_makes_it_fresh_again() -> None:
    t = StalenessTracker(["A", "B"], threshold_ms=500)
    t.touch("A", 0)
    t.touch("B", 0)
    t.touch("B", 400)
    assert t.expired(501) == [("A", 0)]
    assert t.expired(600) == []
    assert t.expired(901) == [("B", 400)]
    assert t.touch("A", 1_000) is True
    assert not t.stale("A", 1_000)
    assert t.expired(1_400) == []


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        StalenessTracker(["A"], threshold_ms=0)
