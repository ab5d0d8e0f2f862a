"""Choosing the strategy from the config: built-in names and user dotted paths."""

import pytest

from domain.strategy import Strategy, StrategyConfigError, StrategyLoadError, load_strategy
from domain.strategy.ema_cross import EmaCrossStrategy
from domain.strategy.loader import validate_strategy
from domain.strategy.smc import SmcStrategy

HERE = "tests.domain.strategy.user_strategies"


def test_built_in_strategies_take_params_and_timeframes() -> None:
    smc = load_strategy("smc", {"min_rr": 3}, ["1d", "4h"], ["15m", "1h"])
    assert isinstance(smc, SmcStrategy)
    assert isinstance(smc, Strategy)
    assert smc.params.min_rr == 3.0
    assert smc.timeframes == ("1d", "4h", "15m", "1h")
    ema = load_strategy("ema_cross", {"fast": 5}, ["4h"], ["1h"])
    assert isinstance(ema, EmaCrossStrategy)
    assert ema.timeframes == ("1h",)


def test_user_strategy_by_dotted_path() -> None:
    strategy = load_strategy(f"{HERE}:AlwaysNothing", {"x": 1}, ["4h"], ["15m"])
    assert strategy.name == "always_nothing"
    assert strategy.timeframes == ("15m",)
    assert strategy.analyze({}, None) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "unknown strategy 'nope'"),
        ("no_such_module_xyz:Thing", "cannot import"),
        (f"{HERE}:Missing", "has no 'Missing'"),
        (f"{HERE}:NOT_CALLABLE", "not callable"),
        (f"{HERE}:NoAnalyze", "'analyze' must be a method"),
        (f"{HERE}:WrongTimeframes", "unknown timeframes"),
        (f"{HERE}:NoArgs", "cannot be built"),
    ],
)
def test_bad_strategies_fail_at_load_with_a_clear_error(name: str, message: str) -> None:
    with pytest.raises(StrategyLoadError, match=message):
        load_strategy(name, {}, ["4h"], ["15m"])


def test_bad_params_of_a_built_in_are_config_errors() -> None:
    with pytest.raises(StrategyConfigError, match="unknown parameters"):
        load_strategy("ema_cross", {"fastest": 1})


def test_validate_checks_analyze_arity() -> None:
    class OneArg:
        name = "x"
        timeframes = ("1h",)

        def analyze(self, data: object) -> None:
            return None

    with pytest.raises(StrategyLoadError, match=r"accept \(data, instrument\)"):
        validate_strategy(OneArg())
