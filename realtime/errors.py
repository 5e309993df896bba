"""Errors of the real-time layer; the socket edge turns them into ``error`` events."""

from __future__ import annotations


class RealtimeError(Exception):
    """Refused real-time input. ``code`` is machine-readable (see docs/realtime.md)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
