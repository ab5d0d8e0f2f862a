"""Entry point: ``python -m adapters.sim.server --help``."""

from __future__ import annotations

from adapters.sim.server.cli import main

raise SystemExit(main())
