import io

import pytest

from adapters.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TtyStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


def make(total: int = 29_000, **kwargs: object) -> tuple[Progress, io.StringIO, FakeClock]:
    stream = io.StringIO()
    clock = FakeClock()
    options = {"enabled": True, "min_interval_s": 0.5, **kwargs}
    bar = Progress(total, "backtest", stream=stream, clock=clock, **options)  # type: ignore[arg-type]
    return bar, stream, clock


def last_line(stream: io.StringIO) -> str:
    """The text drawn last, without the padding that blanks a longer previous line."""
    return stream.getvalue().split("\r")[-1].rstrip(" \n")


def test_renders_bar_percent_counts_and_eta_in_place() -> None:
    bar, stream, clock = make()
    clock.now += 10.0
    bar.update(12_345)
    # 12,345 / 29,000 = 42.57% -> 42% and 8 of 20 cells; rate 1,234.5/s, 16,655 left -> 13.49 s
    assert stream.getvalue() == "\rbacktest [########............] 42% 12,345/29,000 ETA 0:13"


def test_eta_is_unknown_before_any_progress_and_shows_hours() -> None:
    bar, stream, clock = make(total=100)
    bar.update(0)
    assert stream.getvalue().endswith("0% 0/100 ETA --:--")
    clock.now += 60.0
    bar.update(1)  # 99 left at 1 per minute: 99 minutes
    assert stream.getvalue().endswith("1% 1/100 ETA 1:39:00")


def test_throttles_to_min_interval() -> None:
    bar, stream, clock = make(total=10, min_interval_s=0.5)
    clock.now += 1.0
    bar.update(1)  # the first update always draws
    clock.now += 0.2
    bar.update(2)  # too soon
    clock.now += 0.2
    bar.update(3)  # 0.4 s since the last drawing: still too soon
    assert stream.getvalue().count("\r") == 1
    clock.now += 0.1
    bar.update(4)  # 0.5 s: draws
    assert stream.getvalue().count("\r") == 2
    assert last_line(stream).endswith("4/10 ETA 0:02")  # 6 left at 4 per 1.5 s: 2.25 s


def test_close_prints_a_final_line_with_newline_once() -> None:
    bar, stream, clock = make(total=2_000)
    bar.update(1_000)
    clock.now += 75.0
    bar.update(2_000)  # throttling is by time: 75 s later, this draws
    bar.close()
    bar.close()
    assert last_line(stream) == "backtest [####################] 100% 2,000/2,000 in 1:15"
    assert stream.getvalue().endswith("\n")
    assert stream.getvalue().count("\n") == 1


def test_a_shorter_line_blanks_the_rest_of_a_longer_one() -> None:
    bar, stream, clock = make(total=100)
    clock.now += 3600.0
    bar.update(1)  # ETA 99:00:00 is long
    first = stream.getvalue()
    clock.now += 3600.0
    bar.update(100)  # ETA 0:00 is shorter: padded with spaces to the first line's length
    second = stream.getvalue()[len(first) :]
    assert len(second) == len(first)
    assert second.rstrip(" ").endswith("100% 100/100 ETA 0:00")


def test_context_manager_closes_even_on_error() -> None:
    stream = io.StringIO()

    def run() -> None:
        with Progress(10, "run", stream=stream, enabled=True, clock=FakeClock()) as bar:
            bar.update(3)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run()
    assert last_line(stream) == "run [######..............] 30% 3/10 in 0:00"
    assert stream.getvalue().endswith("\n")


def test_disabled_prints_nothing() -> None:
    bar, stream, clock = make(enabled=False)
    with bar:
        for done in range(0, 29_001, 1_000):
            clock.now += 1.0
            bar.update(done)
    assert stream.getvalue() == ""
    assert bar.done == 29_000


def test_enabled_by_default_only_on_a_tty() -> None:
    assert Progress(1, "x", stream=io.StringIO()).enabled is False
    assert Progress(1, "x", stream=TtyStringIO()).enabled is True
    assert Progress(1, "x", stream=TtyStringIO(), enabled=False).enabled is False


def test_counts_are_clamped_and_zero_total_is_complete() -> None:
    bar, stream, _ = make(total=10)
    bar.update(15)
    assert bar.done == 10
    bar, stream, _ = make(total=0)
    bar.close()
    assert stream.getvalue() == "\rbacktest [####################] 100% 0/0 in 0:00\n"
    with pytest.raises(ValueError, match="total"):
        Progress(-1, "x")
