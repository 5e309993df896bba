"""Every code of the real-time layer has its REST answer (rest/errors.py REALTIME_ANSWERS) and
its meaning for clients: a refusal of the live document that reaches REST is never answered
with a wrong status, and no code goes undocumented."""

from __future__ import annotations

import ast
from pathlib import Path

import realtime
from realtime.errors import MEANINGS, ErrorCode, RealtimeError
from rest.errors import REALTIME_ANSWERS, realtime_error_response


def test_every_realtime_code_has_a_rest_answer_and_a_meaning() -> None:
    assert set(REALTIME_ANSWERS) == set(ErrorCode)
    assert set(MEANINGS) == set(ErrorCode)


def test_the_realtime_package_writes_no_code_as_a_bare_string() -> None:
    """Codes are ErrorCode members wherever they are raised or sent (one enum, no strings)."""
    values = {code.value for code in ErrorCode}
    for path in Path(realtime.__file__).parent.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value not in values, f"{path.name}: the code {node.value!r} as a bare string"


def test_a_storage_backlog_is_503_with_retry_after_and_its_own_code() -> None:
    resp = realtime_error_response(
        RealtimeError(ErrorCode.STORAGE_BACKLOG, "the server cannot store edits right now")
    )
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) >= 1
    assert b'"code":"storage_backlog"' in resp.body.replace(b" ", b"")  # type: ignore[union-attr]


def test_size_refusals_are_413_without_retry_after() -> None:
    for code in (ErrorCode.DOCUMENT_TOO_LARGE, ErrorCode.CONTENT_TOO_LARGE, ErrorCode.UPDATE_TOO_LARGE):
        resp = realtime_error_response(RealtimeError(code, "too large"))
        assert resp.status == 413 and "Retry-After" not in resp.headers
