"""Domain errors. The edges translate them: REST into error JSON, sockets into error events."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a caller can be told about. ``code`` is machine-readable."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class QuotaExceeded(DomainError):
    status = 403
    code = "quota_exceeded"


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"


class RateLimited(DomainError):
    """Too many requests; ``retry_after`` seconds until the next one is accepted."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, details: list[Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after
