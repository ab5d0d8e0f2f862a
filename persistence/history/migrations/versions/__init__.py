"""Revisions, oldest first; each is written by hand and must run on SQLite and PostgreSQL."""
