"""Every code a RealtimeError can carry has its REST answer (rest/errors.py REALTIME_ANSWERS):
a refusal of the live document that reaches REST is never answered with a wrong status."""

from __future__ import annotations

import ast
from pathlib import Path

import realtime
from realtime.errors import RealtimeError
from rest.errors import REALTIME_ANSWERS, realtime_error_response


def raised_codes() -> set[str]:
    """The literal codes of every ``RealtimeError(...)`` in the real-time package."""
    codes = set()
    for path in Path(realtime.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "RealtimeError"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                codes.add(node.args[0].value)
    return codes


def test_every_realtime_code_has_a_rest_answer() -> None:
    codes = raised_codes()
    assert {"storage_backlog", "document_too_large", "content_too_large"} <= codes  # the scan works
    assert codes <= set(REALTIME_ANSWERS), codes - set(REALTIME_ANSWERS)


def test_a_storage_backlog_is_503_with_retry_after_and_its_own_code() -> None:
    resp = realtime_error_response(
        RealtimeError("storage_backlog", "the server cannot store edits right now")
    )
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) >= 1
    assert b'"code":"storage_backlog"' in resp.body.replace(b" ", b"")  # type: ignore[union-attr]


def test_size_refusals_are_413_without_retry_after() -> None:
    for code in ("document_too_large", "content_too_large", "update_too_large"):
        resp = realtime_error_response(RealtimeError(code, "too large"))
        assert resp.status == 413 and "Retry-After" not in resp.headers
