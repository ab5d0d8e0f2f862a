"""Trade statistics against hand-computed values (the arithmetic is in the comments)."""

from decimal import Decimal

import pytest

from domain.metrics import (
    Drawdown,
    TradeResult,
    TradeStats,
    average_r,
    equity_curve,
    expectancy,
    gross_profit_loss,
    max_drawdown,
    profit_factor,
    summarize,
    win_rate,
)

D = Decimal


def pnls(*values: str) -> list[Decimal]:
    return [D(v) for v in values]


MIXED = pnls("100", "-50", "0", "30", "-20")


def test_win_rate_counts_break_even_trades_as_trades_but_not_wins() -> None:
    # wins: 100, 30 -> 2 of 5 trades (the 0 is neither a win nor a loss)
    assert win_rate(MIXED) == pytest.approx(0.4)
    assert win_rate(pnls("0", "0")) == 0.0
    assert win_rate([]) is None


def test_gross_profit_and_loss() -> None:
    # profit 100 + 30 = 130; loss 50 + 20 = 70 (a positive amount)
    assert gross_profit_loss(MIXED) == (D(130), D(70))
    assert gross_profit_loss([]) == (D(0), D(0))


def test_profit_factor() -> None:
    assert profit_factor(MIXED) == pytest.approx(130 / 70)  # 1.857142...
    assert profit_factor(pnls("10", "5")) is None  # nothing lost: unbounded, not infinity
    assert profit_factor(pnls("-10", "-5")) == 0.0  # 0 / 15
    assert profit_factor(pnls("0")) is None
    assert profit_factor([]) is None


def test_expectancy_is_the_mean_pnl() -> None:
    # (100 - 50 + 0 + 30 - 20) / 5 = 60 / 5 = 12
    assert expectancy(MIXED) == D(12)
    # same through the textbook form: 0.4 * (130 / 2) - 0.4 * (70 / 2) = 26 - 14 = 12
    assert D("0.4") * (D(130) / 2) - D("0.4") * (D(70) / 2) == D(12)
    assert expectancy(pnls("-3")) == D(-3)
    assert expectancy([]) is None


def test_average_r_ignores_unknown_r() -> None:
    # (2 + -1 + 0.5) / 3 = 1.5 / 3 = 0.5; the None (an adopted position) is skipped
    assert average_r([D(2), None, D(-1), D("0.5")]) == D("0.5")
    assert average_r([None, None]) is None
    assert average_r([]) is None


def test_equity_curve_starts_at_start() -> None:
    assert equity_curve(pnls("10", "-4")) == [D(0), D(10), D(6)]
    assert equity_curve(pnls("10", "-4"), D(1000)) == [D(1000), D(1010), D(1006)]
    assert equity_curve([]) == [D(0)]


def test_max_drawdown_on_an_equity_curve() -> None:
    # peaks 1000 then 1200; falls: 1000 -> 900 = 100 (10%), 1200 -> 1020 = 180 (15%)
    curve = pnls("1000", "900", "1200", "1100", "1020", "1150")
    assert max_drawdown(curve) == Drawdown(D(180), pytest.approx(0.15))


def test_max_drawdown_amount_and_fraction_can_come_from_different_episodes() -> None:
    # 100 -> 50 is 50 (50%); 1000 -> 800 is 200 (20%): the deepest amount and the deepest
    # fraction are reported each on its own
    curve = pnls("100", "50", "1000", "800")
    dd = max_drawdown(curve)
    assert dd.amount == D(200)
    assert dd.fraction == pytest.approx(0.5)


def test_max_drawdown_on_cumulative_pnl() -> None:
    # MIXED cumulative: 0, 100, 50, 50, 80, 60 -> peak 100, trough 50: 50, half the peak
    assert max_drawdown(equity_curve(MIXED)) == Drawdown(D(50), pytest.approx(0.5))
    # a first loss falls from the starting 0: an amount but no fraction (no peak above 0)
    assert max_drawdown(equity_curve(pnls("-10", "-5", "20"))) == Drawdown(D(15), None)
    # more than the whole profit given back: 0, 10, -30 -> 40 from a peak of 10 = 400%
    assert max_drawdown(equity_curve(pnls("10", "-40"))) == Drawdown(D(40), pytest.approx(4.0))


def test_max_drawdown_of_a_curve_that_never_falls() -> None:
    assert max_drawdown(pnls("1", "2", "2", "3")) == Drawdown(D(0), None)
    assert max_drawdown([]) == Drawdown(D(0), None)


def test_summarize_mixed_trades() -> None:
    trades = [
        TradeResult(D(100), fees=D(2), funding=D("0.5"), r_multiple=D(2)),
        TradeResult(D(-50), fees=D(1), funding=D("-0.25"), r_multiple=D(-1)),
        TradeResult(D(0), fees=D(1)),
        TradeResult(D(30), fees=D("0.5"), r_multiple=D("0.6")),
        TradeResult(D(-20), fees=D("0.5"), r_multiple=D("-0.4")),
    ]
    stats = summarize(trades)
    assert stats == TradeStats(
        count=5,
        wins=2,
        losses=2,
        win_rate=pytest.approx(0.4),  # 2 / 5
        gross_profit=D(130),  # 100 + 30
        gross_loss=D(70),  # 50 + 20
        net_pnl=D(60),  # 130 - 70
        fees=D(5),  # 2 + 1 + 1 + 0.5 + 0.5
        funding=D("0.25"),  # 0.5 - 0.25
        profit_factor=pytest.approx(130 / 70),
        max_drawdown=Drawdown(D(50), pytest.approx(0.5)),  # 100 -> 50
        expectancy=D(12),  # 60 / 5
        avg_r=D("0.3"),  # (2 - 1 + 0.6 - 0.4) / 4 = 1.2 / 4
    )
    assert stats.breakeven == 1


def test_summarize_no_trades() -> None:
    stats = summarize([])
    assert stats == TradeStats()
    assert (stats.count, stats.net_pnl, stats.fees) == (0, D(0), D(0))
    assert stats.win_rate is None
    assert stats.profit_factor is None
    assert stats.expectancy is None
    assert stats.avg_r is None
    assert stats.max_drawdown == Drawdown(D(0), None)


def test_summarize_all_wins() -> None:
    stats = summarize([TradeResult(D(10)), TradeResult(D(5)), TradeResult(D("2.5"))])
    assert (stats.wins, stats.losses, stats.win_rate) == (3, 0, 1.0)
    assert stats.gross_profit == stats.net_pnl == D("17.5")  # 10 + 5 + 2.5
    assert stats.gross_loss == D(0)
    assert stats.profit_factor is None  # no loss to divide by
    assert stats.max_drawdown == Drawdown(D(0), None)  # 0, 10, 15, 17.5 only rises
    assert stats.expectancy == D("17.5") / 3


def test_summarize_all_losses() -> None:
    stats = summarize([TradeResult(D(-10), r_multiple=D(-1)), TradeResult(D(-30))])
    assert (stats.wins, stats.losses, stats.win_rate) == (0, 2, 0.0)
    assert stats.gross_loss == D(40)
    assert stats.net_pnl == D(-40)
    assert stats.profit_factor == 0.0  # 0 / 40
    assert stats.max_drawdown == Drawdown(D(40), None)  # 0 -> -40, never above 0
    assert stats.expectancy == D(-20)  # -40 / 2
    assert stats.avg_r == D(-1)  # only one trade has an R


def test_summarize_break_even_trades_only() -> None:
    stats = summarize([TradeResult(D(0), fees=D(1)), TradeResult(D(0), fees=D(1))])
    assert (stats.count, stats.wins, stats.losses, stats.breakeven) == (2, 0, 0, 2)
    assert stats.win_rate == 0.0
    assert stats.profit_factor is None
    assert stats.expectancy == D(0)
    assert stats.fees == D(2)


def test_summarize_with_a_starting_equity_gives_a_drawdown_fraction() -> None:
    # equity 1000, 1100, 1045: 55 from a peak of 1100 = 5%
    stats = summarize([TradeResult(D(100)), TradeResult(D(-55))], start=D(1000))
    assert stats.max_drawdown == Drawdown(D(55), pytest.approx(0.05))
    assert stats.net_pnl == D(45)  # the start does not change the PnL


def test_stats_are_frozen() -> None:
    stats = summarize([TradeResult(D(1))])
    with pytest.raises(AttributeError):
        stats.count = 2  # type: ignore[misc]
