"""Report files: what a run leaves on disk for a person to read (CSV, JSON, PNG plots).

Import the writer from its module (:mod:`adapters.report.backtest`); importing this package
alone does not load matplotlib.
"""
