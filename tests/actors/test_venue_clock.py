from __future__ import annotations

from actors.runtime import VenueClock


class Wall:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_extrapolates_at_speed_and_never_goes_back() -> None:
    wall = Wall()
    clock = VenueClock(speed=60, wall=wall)
    clock.observe(5_000_000)
    wall.t += 1.0
    assert clock.now() == 5_060_000
    wall.t += 1.0  # the venue stalled: our estimate runs ahead to 5_120_000
    assert clock.now() == 5_120_000
    clock.observe(5_070_000)  # the venue's real time: re-anchor
    assert clock.now() == 5_120_000  # held, not stepped back
    wall.t += 1.0
    assert clock.now() == 5_130_000  # moves again once the venue has caught up


def test_first_observation_replaces_the_wall_clock() -> None:
    wall = Wall()
    clock = VenueClock(speed=1, wall=wall)
    assert clock.now() == 1_000_000
    clock.observe(500)  # a simulated venue far in the past
    assert clock.now() == 500
