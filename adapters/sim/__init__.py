"""The simulated Kraken Futures exchange: a deterministic in-process engine and its market data.

- :mod:`adapters.sim.instruments`: the simulated perpetuals (grids from the venue's instruments).
- :mod:`adapters.sim.engine`: :class:`~adapters.sim.engine.SimEngine`, the public engine API
  (order entry, queries, fault hooks, snapshots), built on :mod:`adapters.sim.matching` (price
  input and matching) and :mod:`adapters.sim.core` (state, execution, reduce-only, liquidation).
- :mod:`adapters.sim.accounts`: positions, PnL and the margin model.
- :mod:`adapters.sim.models`: value types and the venue's status strings.
- :mod:`adapters.sim.marketdata`: the seeded regime generator and OHLCV replay.
"""
