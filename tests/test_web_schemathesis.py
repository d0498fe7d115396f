"""Property-based run of the OpenAPI document (schemathesis): every operation, with bodies, parameters and
headers generated from the document, against the real app over HTTP (a deputy's API token, the IT admin's for
the chat and roster routes). No answer may be a server error, and every JSON answer must match its schema."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.clock import ManualClock
from gateway.web import auth
from gateway.web.openapi import document
from tests.web import running_web

IT_ROUTES = ("/api/chats", "/api/roster", "/chats", "/roster")


@schemathesis.serializer("text/csv")
def _csv(ctx: Any, value: Any) -> dict[str, Any]:
    return {"data": value if isinstance(value, bytes) else str(value).encode("utf-8")}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """The app served from a thread of its own (schemathesis calls it synchronously): (base URL, tokens)."""
    ready: queue.Queue[tuple[str, dict[str, str]] | BaseException] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        clock = ManualClock(datetime(2026, 11, 23, 5, 0, tzinfo=UTC))
        async with running_web(tmp_path_factory.mktemp("web"), clock, passwords=False) as w:
            tokens = {who: (await auth.create_token(w.gateway, "s1", who, "schemathesis"))[1] for who in ("dep", "it")}
            ready.put((w.base, tokens))
            await asyncio.to_thread(stop.wait)

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:
            ready.put(exc)

    thread = threading.Thread(target=run, name="zvonok-web", daemon=True)
    thread.start()
    got = ready.get(timeout=60)
    if isinstance(got, BaseException):
        raise got
    yield got
    stop.set()
    thread.join(timeout=30)


# The document is the app's own, made without a server; the server is the `live` fixture.
schema = schemathesis.openapi.from_dict(document())


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors_and_answers_match_the_document(case: Any, live: tuple[str, dict[str, str]]) -> None:
    base, tokens = live
    token = tokens["it"] if case.path.startswith(IT_ROUTES) else tokens["dep"]
    case.call_and_validate(
        base_url=base,
        headers={"Authorization": f"Bearer {token}"},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )


def test_the_run_covers_every_operation() -> None:
    operations = {(m.upper(), p) for p, ops in document()["paths"].items() for m in ops}
    assert len(operations) >= 40  # the parametrized test above runs once per operation
