"""Schemathesis against the app's own /api/openapi.json, on both databases.

Every operation in the document at run time (so endpoints added later are covered too) gets
a bounded number of generated requests, valid and invalid. Pass criteria: no 5xx, every
response matches its documented schema, every status it answers with is documented.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from musicplayground.app import create_app
from settings import Settings
from tests.conftest import TEST_SECRET

# Examples per operation and generation mode: a few hundred requests in all per database.
EXAMPLES = 8
CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance)


class ThreadedServer:
    """The real app on a real socket, served from its own event loop in a thread, so the
    (synchronous) fuzzer can call it."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzzed-app", daemon=True)
        self.runner = web.AppRunner(app)
        self.url = ""

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()

        async def start() -> str:
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            host, port = self.runner.addresses[0][:2]
            return f"http://{host}:{port}"

        self.url = self._run(start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ThreadedServer]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=TEST_SECRET,
        public_base_url="http://testserver",
        access_log=False,
        # Hundreds of requests from one caller: with limits on most would be (documented) 429s
        # and the fuzzer would explore little; the limits have their own tests.
        rate_limits_enabled=False,
    )
    with ThreadedServer(create_app(settings)) as running:
        yield running


@pytest.mark.timeout(600)
def test_the_api_keeps_its_documented_contract(server: ThreadedServer) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/api/openapi.json")
    session = requests.post(f"{server.url}/api/auth/anonymous", timeout=10).json()
    auth = {"Authorization": f"Bearer {session['token']}"}
    # Something to find: a loop of the signed-in user, so path ids sometimes exist.
    requests.post(f"{server.url}/api/loops", json={"name": "fuzz", "length": 4}, headers=auth, timeout=10)
    failures: list[str] = []
    calls: list[int] = []
    operations = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,  # the same examples every run: CI failures reproduce
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def exercise(case: schemathesis.Case) -> None:
                response = case.call(base_url=server.url, headers=auth, timeout=30)
                calls.append(response.status_code)
                case.validate_response(response, checks=list(CHECKS))

            try:
                exercise()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to get wrong: no parameters, no body
            except Exception as exc:  # collect every operation's failure, then report them all
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert operations >= 10  # the document was read, not an empty one
    assert len(calls) >= operations * EXAMPLES  # and every operation was exercised
    assert {200, 201, 400, 401, 404} <= set(calls)
    assert not failures, "\n\n".join(failures)
