"""Conditions a page explains in a sentence instead of failing: kept apart from the modules that
raise them, so catching one never imports MLflow or a database driver."""

from __future__ import annotations


class DatabaseNotReady(Exception):
    """The database exists as a URL only: no file yet, or no schema (nothing ingested yet)."""


class MlflowNotReady(Exception):
    """No tracking store yet (nothing trained): a state to explain, not a failure."""


class MlflowUnreachable(ConnectionError):
    """The tracking server does not answer its health check."""
