"""Account equity from Kraken Futures' balance answer (the flex account, API-FACTS.md)."""

from decimal import Decimal

from adapters.exchange.convert import marked_equity

# the venue's answer for a flex account holding USD and XBT collateral, with a position open
FLEX = {
    "balanceValue": 9998.72,
    "portfolioValue": 9948.72,
    "collateralValue": 9886.49,
    "totalUnrealized": -50,
    "marginEquity": 9836.49,
}


def test_equity_is_the_margin_equity_with_haircut_collateral_and_open_pnl() -> None:
    balance = {"info": {"accounts": {"flex": FLEX}}}
    equity, unrealized = marked_equity(balance, {"total": 5000})
    assert equity == Decimal("9836.49")  # not the portfolio value, which counts XBT whole
    assert unrealized == Decimal(-50)


def test_portfolio_value_then_the_unified_total_stand_in_when_the_venue_omits_it() -> None:
    flex = {k: v for k, v in FLEX.items() if k != "marginEquity"}
    equity, _ = marked_equity({"info": {"accounts": {"flex": flex}}}, {"total": 5000})
    assert equity == Decimal("9948.72")
    assert marked_equity({"info": {}}, {"total": 5000}) == (Decimal(5000), Decimal(0))
