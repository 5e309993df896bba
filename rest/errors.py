"""One middleware turns every failure into the error JSON of DESIGN.md.

``{"error": "<human message>", "code": "<machine_code>", "details": [...]}``
Domain errors carry their own status and code; anything unexpected is logged and
answered with a 500 that reveals nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from identity.errors import InvalidToken
from identity.firebase import FirebaseUnavailable
from realtime.errors import ErrorCode, RealtimeError
from rest.responses import json_response
from storage.errors import DomainError, RateLimited

log = logging.getLogger(__name__)


class BadRequest(DomainError):
    status = 400
    code = "validation_error"


class RequestTimeout(DomainError):
    status = 408
    code = "request_timeout"


class UnsupportedMediaType(DomainError):
    status = 415
    code = "unsupported_media_type"


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return json_response(
        {"error": message, "code": code, "details": details or []}, status=status, headers=headers
    )


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        field = _location(err["loc"])
        if err["type"] == "extra_forbidden":
            message = f"unknown field {field!r}"
        elif err["type"] == "missing":
            message = f"{field} is required"
        else:
            message = f"{field}: {err['msg']}" if field else err["msg"]
        details.append({"field": field, "message": message, "type": err["type"]})
    return details


def validation_error(exc: ValidationError, *, what: str = "request body") -> BadRequest:
    details = validation_details(exc)
    if any(d["type"] == "json_invalid" for d in details):
        return BadRequest(f"{what} is not valid JSON", details=details)
    first = details[0]["message"] if details else "invalid input"
    extra = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return BadRequest(f"invalid {what}: {first}{extra}", details=details)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


@dataclass(frozen=True)
class RealtimeAnswer:
    """How REST answers a refusal of the real-time layer: status, and ``Retry-After`` seconds."""

    status: int
    retry_after: int | None = None


# Every code a RealtimeError can carry (docs/realtime.md#errors) as REST answers it, with the
# code itself kept as the error code. tests/unit/test_realtime_answers.py keeps it complete.
REALTIME_ANSWERS: dict[ErrorCode, RealtimeAnswer] = {
    ErrorCode.DOCUMENT_TOO_LARGE: RealtimeAnswer(413),
    ErrorCode.CONTENT_TOO_LARGE: RealtimeAnswer(413),
    ErrorCode.POSITION_OUT_OF_RANGE: RealtimeAnswer(400),
    ErrorCode.UPDATE_TOO_LARGE: RealtimeAnswer(413),
    ErrorCode.MALFORMED_UPDATE: RealtimeAnswer(400),
    ErrorCode.MALFORMED_MESSAGE: RealtimeAnswer(400),
    ErrorCode.MALFORMED_AWARENESS: RealtimeAnswer(400),
    ErrorCode.UNKNOWN_EVENT: RealtimeAnswer(400),
    ErrorCode.MISSING_DEPENDENCIES: RealtimeAnswer(409),
    ErrorCode.READ_ONLY: RealtimeAnswer(403),
    ErrorCode.ACCESS_REVOKED: RealtimeAnswer(403),
    ErrorCode.DOCUMENT_DELETED: RealtimeAnswer(404),
    ErrorCode.RATE_LIMITED: RealtimeAnswer(429, retry_after=1),
    ErrorCode.TOO_MANY_REFUSED_UPDATES: RealtimeAnswer(429, retry_after=1),
    ErrorCode.ROOM_FULL: RealtimeAnswer(503, retry_after=5),
    # The update log is waiting for the database: nothing was changed; it drains in seconds.
    ErrorCode.STORAGE_BACKLOG: RealtimeAnswer(503, retry_after=2),
    ErrorCode.STORAGE_UNAVAILABLE: RealtimeAnswer(503, retry_after=2),
}


def realtime_error_response(exc: RealtimeError) -> web.Response:
    answer = REALTIME_ANSWERS[exc.code]  # complete: tests/unit/test_realtime_answers.py
    headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after is not None else None
    return error_response(answer.status, exc.code, exc.message, headers=headers)


class OneLineServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The HTTP server's error log (``aiohttp.server``), one WARNING line per event.

    aiohttp logs malformed requests (oversized headers, invalid bytes) and broken
    connections with a full traceback at ERROR; they are the client's doing, not ours.
    """

    def __init__(self) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else None
        reason = f"{type(error).__name__}: {_first_line(error)}" if error is not None else "no detail"
        self.logger.warning("%s: %s", str(msg) % args if args else msg, reason)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else ""


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except RateLimited as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details, headers=exc.headers)
    except DomainError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details)
    except RealtimeError as exc:  # a REST write refused by the live document
        return realtime_error_response(exc)
    except InvalidToken as exc:
        # ``token_expired`` (refresh and retry) or ``invalid_token`` (sign in again).
        return error_response(401, exc.code, exc.reason, headers={"WWW-Authenticate": "Bearer"})
    except FirebaseUnavailable:
        log.exception("Firebase certificates unavailable")
        return error_response(
            503, "identity_provider_unavailable", "sign-in verification is temporarily unavailable"
        )
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, "payload_too_large", f"request body too large: {exc.text}")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason.lower() if exc.status != 404 else "no such endpoint"
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, code, message, headers=allow)
    except ConnectionError as exc:  # the client hung up (mid-body, mid-response)
        log.warning("client went away during %s %s: %s", request.method, request.path[:200], exc)
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal server error")
