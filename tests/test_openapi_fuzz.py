"""Schemathesis over every operation in `/openapi.json`, against a live server on SQLite: each
answer's status, content type, body and headers must be the ones the document declares, and
none may be a 5xx but a provider's 502. So the document can be trusted by a client generated
from it, and every error is in its dialect's shape (surfaces/error_shapes.py).

Reproducible: a fixed seed, derandomized Hypothesis, no example database. `make fuzz` runs the
same with more examples (`PROMPTDECK_FUZZ_EXAMPLES`); `PROMPTDECK_FUZZ_DATABASE=postgres` runs
it on PostgreSQL instead of SQLite.

The prompts answer from the fake upstream on 127.0.0.1, and while the fuzzer runs this process
may open no connection off loopback at all: a fuzzed credential's `base_url` or a fuzzed
`raw_overrides.url` fails instead of reaching out. The fuzzer's admin key is never revoked by
the fuzzer (`POST /api/keys/{key_id}/revoke` runs, but with any id but that key's).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from promptdeck.app import create_app
from promptdeck.config import Settings
from promptdeck.services import Services
from tests.conftest import Deck
from tests.support.fake_openai import FakeOpenAI, deck_over, push_prompt, refused_url, sqlite_url

EXAMPLES = int(os.environ.get("PROMPTDECK_FUZZ_EXAMPLES", "25"))  # per operation and phase
DATABASE = os.environ.get("PROMPTDECK_FUZZ_DATABASE", "sqlite")  # or postgres
SEED = 20_251_204
PROVIDER_FAILED = 502  # documented on the routes that call a provider; every other 5xx is a bug
REVOKE = "/api/keys/{key_id}/revoke"
STATUSES: Counter[int] = Counter()  # what the fuzzer got back, for the summary


def allowed(host: Any) -> bool:
    if host in (None, "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """No name look-up or connection off 127.0.0.1/::1 from this process, the server included."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not allowed(address[0]):
            raise ConnectionRefusedError(f"test_openapi_fuzz: no connection off loopback ({address[0]})")
        real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not allowed(host.decode() if isinstance(host, bytes) else host):
            raise socket.gaierror(socket.EAI_NONAME, f"test_openapi_fuzz: no look-up of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield


@pytest.fixture(scope="module")
def fuzz_deck(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deck]:
    """A server whose every provider is on loopback: `fast` and the example `summarize` answer
    from the fake upstream (so the local model never runs), the others from nowhere."""
    directory = tmp_path_factory.mktemp("fuzz")
    database_url = sqlite_url(directory)
    if DATABASE == "postgres":
        database_url = request.getfixturevalue("postgres").new_database()
    nowhere = refused_url()
    overrides = {
        "anthropic_base_url": nowhere,
        "gemini_base_url": nowhere,
        "azure_openai_endpoint": nowhere,
        "upstreams": "",
    }
    with (
        loopback_only(),
        FakeOpenAI() as upstream,
        deck_over(upstream.url, database_url, directory, **overrides) as deck,
    ):
        push_prompt(deck.url, deck.admin_key, "summarize", "openai/summarize")
        yield deck
        print(f"\nfuzzed: {sum(STATUSES.values())} requests; statuses {dict(sorted(STATUSES.items()))}")


@pytest.fixture(scope="module")
def own_key_id(fuzz_deck: Deck) -> str:
    with fuzz_deck.client() as client:
        keys = client.get("/api/keys").raise_for_status().json()["data"]
    (mine,) = [k for k in keys if fuzz_deck.admin_key.startswith(k["prefix"])]
    return str(mine["id"])


def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document, built without services (nothing is started or stored), so
    that pytest sees one test per operation; `test_the_live_server_serves_this_document`."""
    unstarted = cast(Services, object())
    # metrics off: the stand-in has no Metrics (/metrics is left out of the document anyway)
    settings = Settings(data_dir=Path("unused"), database_url="sqlite+aiosqlite://", metrics=False)
    app: Any = create_app(settings, unstarted)
    while not isinstance(app, FastAPI):  # inside the ASGI middlewares
        app = app.app
    return app.openapi()


DOCUMENT = openapi_document()


def no_server_error_but_a_provider_failure(ctx: Any, response: Any, case: Any) -> None:
    """`not_a_server_error`, but for the 502 of a provider that failed (status conformance
    checks that the operation declares it)."""
    STATUSES[response.status_code] += 1
    if response.status_code >= 500 and response.status_code != PROVIDER_FAILED:
        raise AssertionError(f"server error {response.status_code}: {response.text[:500]}")


@schemathesis.serializer("application/gzip")
def gzip_body(ctx: Any, value: Any) -> bytes:
    """`POST /api/import`'s archive: fuzzed bytes, sent as they are."""
    return value if isinstance(value, bytes) else str(value).encode()


CHECKS = [
    no_server_error_but_a_provider_failure,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
        }
    ),
)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_documented(case: Any, fuzz_deck: Deck, own_key_id: str) -> None:
    if case.path == REVOKE and case.path_parameters.get("key_id") == own_key_id:
        return  # the fuzzer's own key: revoking it would lock the fuzzer out
    key = fuzz_deck.admin_key
    case.call_and_validate(
        base_url=fuzz_deck.url,
        headers={"Authorization": f"Bearer {key}", "X-API-KEY": key},
        checks=CHECKS,
        timeout=60,
    )


@pytest.mark.parametrize("number", ['"nan"', '"inf"', '"-Infinity"', "NaN", "Infinity"])
def test_a_price_is_a_finite_number(fuzz_deck: Deck, number: str) -> None:
    """What the fuzzer does not send: JSON has no such numbers, but pydantic reads them from
    strings (and Python's JSON reader from these literals)."""
    with fuzz_deck.client() as client:
        body = f'{{"input_per_mtok": {number}, "output_per_mtok": 1}}'
        response = client.put(
            "/api/prices/custom/model", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


def test_the_live_server_serves_this_document(fuzz_deck: Deck) -> None:
    assert httpx.get(f"{fuzz_deck.url}/openapi.json").json() == DOCUMENT


def test_the_fuzzers_key_still_works(fuzz_deck: Deck) -> None:
    """Run after the fuzzing: it did not lock itself out (the checks above would have seen 401s
    as documented answers, and passed for the wrong reason)."""
    with fuzz_deck.client() as client:
        response = client.get("/api/keys")
    assert response.status_code == 200, response.text
