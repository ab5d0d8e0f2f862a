"""Telegram: the operators' commands and alerts (see :mod:`adapters.telegram.bot`)."""
