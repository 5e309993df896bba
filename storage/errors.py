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


# --- samples (uploads are judged from their bytes) ----------------------------------------


class FileTooLarge(DomainError):
    status = 413
    code = "file_too_large"


class UnsupportedAudio(DomainError):
    status = 415
    code = "unsupported_audio_type"


class UnreadableAudio(DomainError):
    status = 422
    code = "unreadable_audio"


class InfectedFile(DomainError):
    status = 422
    code = "malware_detected"


class ScannerUnavailable(DomainError):
    status = 503
    code = "scanner_unavailable"


class RateLimited(DomainError):
    """Too many requests; ``retry_after`` seconds until the next one is accepted. ``headers``
    may add the RateLimit fields (rest/rate_limits.py)."""

    status = 429
    code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after: int,
        headers: dict[str, str] | None = None,
        details: list[Any] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after
        self.headers = {**(headers or {}), "Retry-After": str(retry_after)}


class HistoryNotKept(DomainError):
    """A time before the kept history starts (the retention window dropped it)."""

    status = 410
    code = "history_not_kept"


class HistoryPrivate(Forbidden):
    """The caller may read the document but not its history (the owner has not allowed it)."""

    code = "history_private"
