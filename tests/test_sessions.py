"""Sessions on the wire: every dialect puts a run in a session by the `X-Promptdeck-Session-Id`
header, and by its metadata's `session_id` (taken out of the stored metadata); the header wins;
a bad value is refused in the dialect's own error shape, naming the field, before any provider
call; the run log filters by session; `GET /api/sessions/{id}` gives its runs oldest first,
paged, with totals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import INPUTS, FakeOpenAI, deck_over, push_prompt, run_of, sqlite_url

upstream = fake_openai.upstream
DIALECTS = ("fetchhive", "openai", "traceport", "vellum")
HEADER = "X-Promptdeck-Session-Id"
PRICED = "priced"  # served by openai/gpt-4o-mini, which genai-prices knows: its runs have a cost


@pytest.fixture(scope="module")
def hive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deck, FakeOpenAI]]:
    directory = tmp_path_factory.mktemp("sessions")
    with FakeOpenAI() as server, deck_over(server.url, sqlite_url(directory), directory) as deck:
        push_prompt(deck.url, deck.admin_key, PRICED, "openai/gpt-4o-mini")
        yield deck, server


def call(
    deck: Deck,
    dialect: str,
    deployment: str = "fast",
    metadata: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    stream: bool = False,
) -> httpx.Response:
    """One call in `dialect` with INPUTS (and `metadata`, `headers`); streamed ones read whole."""
    extra: dict[str, Any] = {} if metadata is None else {"metadata": metadata}
    if dialect == "fetchhive":
        path, body = "/v1/prompt/invoke", {"deployment": deployment, "inputs": INPUTS, "streaming": stream}
    elif dialect == "openai":
        path = "/v1/chat/completions"
        messages = [{"role": "user", "content": "and now in French"}]
        body = {"model": deployment, "messages": messages, "variables": INPUTS, "stream": stream}
    elif dialect == "traceport":
        path, body = f"/prompt/{deployment}/run", {"variables": INPUTS, "stream": stream}
    else:
        path = "/v1/execute-prompt-stream" if stream else "/v1/execute-prompt"
        inputs = [{"type": "STRING", "name": name, "value": value} for name, value in INPUTS.items()]
        body = {"prompt_deployment_name": deployment, "inputs": inputs}
    with deck.client() as client:
        return client.post(path, json=body | extra, headers={"X-API-KEY": deck.admin_key, **(headers or {})})


def request_id(dialect: str, response: httpx.Response) -> str:
    """The run's request id (Vellum: its run id), from any dialect's non-streamed answer."""
    assert response.status_code == 200, response.text
    if dialect == "fetchhive":
        return str(response.json()["request_id"])
    if dialect == "vellum":
        return str(response.json()["execution_id"]).replace("-", "")
    return str(response.headers["x-request-id"])


def ids_of(runs: list[dict[str, Any]]) -> list[str]:
    """Each run as `request_id` names it."""
    return [run["id"] if run["dialect"] == "vellum" else run["request_id"] for run in runs]


def session_of(deck: Deck, dialect: str, response: httpx.Response) -> dict[str, Any]:
    return run_of(deck, request_id(dialect, response))


def get_session(deck: Deck, session_id: str, **params: Any) -> httpx.Response:
    deck.flush()
    with deck.client() as client:
        return client.get(f"/api/sessions/{session_id}", params=params)


# ── each dialect sets it ────────────────────────────────────────────────────


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_header_puts_a_run_in_a_session_in_every_dialect(
    hive: tuple[Deck, FakeOpenAI], dialect: str
) -> None:
    deck, _ = hive
    run = session_of(deck, dialect, call(deck, dialect, headers={HEADER: f"conv-{dialect}"}))
    assert run["session_id"] == f"conv-{dialect}"
    assert run["metadata"] is None


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_metadata_key_puts_a_run_in_a_session_and_leaves_the_metadata(
    hive: tuple[Deck, FakeOpenAI], dialect: str
) -> None:
    deck, _ = hive
    metadata = {"session_id": f"meta-{dialect}", "team": "growth"}
    run = session_of(deck, dialect, call(deck, dialect, metadata=metadata))
    assert run["session_id"] == f"meta-{dialect}"
    assert run["metadata"] == {"team": "growth"}  # stored once, as the run's session

    only = session_of(deck, dialect, call(deck, dialect, metadata={"session_id": f"only-{dialect}"}))
    assert only["session_id"] == f"only-{dialect}" and only["metadata"] is None


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_header_wins_over_the_metadata(hive: tuple[Deck, FakeOpenAI], dialect: str) -> None:
    deck, _ = hive
    response = call(deck, dialect, metadata={"session_id": "from-body"}, headers={HEADER: "from-header"})
    run = session_of(deck, dialect, response)
    assert run["session_id"] == "from-header" and run["metadata"] is None


def test_empty_or_null_is_no_session(hive: tuple[Deck, FakeOpenAI]) -> None:
    deck, _ = hive
    for metadata, headers in (({"session_id": ""}, {HEADER: ""}), ({"session_id": None, "k": 1}, None)):
        run = session_of(deck, "fetchhive", call(deck, "fetchhive", metadata=metadata, headers=headers))
        assert run["session_id"] is None
    assert run["metadata"] == {"k": 1}


def test_a_streamed_run_joins_its_session(hive: tuple[Deck, FakeOpenAI]) -> None:
    deck, _ = hive
    for dialect in DIALECTS:
        response = call(deck, dialect, metadata={"session_id": "streamed"}, stream=True)
        assert response.status_code == 200, response.text
    runs = get_session(deck, "streamed").json()["data"]
    assert sorted(run["dialect"] for run in runs) == sorted(DIALECTS)
    assert all(run["streamed"] for run in runs)


# ── bad values ──────────────────────────────────────────────────────────────

TOO_LONG = "s" * 201
BAD_METADATA = (
    (TOO_LONG, "expected at most 200 characters; got 201"),
    ("line\nbreak", "expected printable characters only"),
    (42, "expected a string; got 42"),
)


def problem(dialect: str, response: httpx.Response) -> tuple[int, str, str | None]:
    """Status, message and (OpenAI's) param of a dialect's error answer, its shape checked."""
    body = response.json()
    if dialect == "fetchhive":
        fake_openai.expect_hive_error(response, 422, "validation_error")
        return response.status_code, body["message"], None
    if dialect == "vellum":
        assert set(body) == {"detail"}, body
        return response.status_code, body["detail"], None
    error = body["error"]
    assert error["type"] == "invalid_request_error", body
    return response.status_code, error["message"], error["param"]


WANTED_STATUS = {"fetchhive": 422, "openai": 400, "traceport": 400, "vellum": 400}  # each one's bad body


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_bad_metadata_session_is_refused_in_the_dialects_shape(
    hive: tuple[Deck, FakeOpenAI], dialect: str
) -> None:
    deck, server = hive
    before = len(server.seen)
    for value, said in BAD_METADATA:
        status, message, param = problem(dialect, call(deck, dialect, metadata={"session_id": value}))
        assert status == WANTED_STATUS[dialect]
        assert "metadata.session_id: " + said in message, message
        if dialect in ("openai", "traceport"):
            assert param == "metadata.session_id"
    assert len(server.seen) == before  # refused before any provider call


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_bad_session_header_is_refused_in_the_dialects_shape(
    hive: tuple[Deck, FakeOpenAI], dialect: str
) -> None:
    deck, server = hive
    before = len(server.seen)
    bad = ((TOO_LONG, "expected at most 200 characters; got 201"), ("a\tb", "printable characters only"))
    for value, said in bad:
        status, message, _ = problem(dialect, call(deck, dialect, headers={HEADER: value}))
        assert status == WANTED_STATUS[dialect]
        assert message.startswith(f"{HEADER} header: ") and said in message, message
    assert len(server.seen) == before


def test_two_hundred_printable_characters_are_a_session(hive: tuple[Deck, FakeOpenAI]) -> None:
    deck, _ = hive
    longest = "Ω-" + "x" * 198
    run = session_of(deck, "openai", call(deck, "openai", metadata={"session_id": longest}))
    assert run["session_id"] == longest


# ── the run log and the session view ────────────────────────────────────────


def test_the_run_log_filters_by_session(hive: tuple[Deck, FakeOpenAI]) -> None:
    deck, _ = hive
    for dialect in DIALECTS:
        call(deck, dialect, headers={HEADER: "filtered"})
    call(deck, "fetchhive", PRICED, headers={HEADER: "filtered"})
    call(deck, "fetchhive", headers={HEADER: "another"})
    deck.flush()
    with deck.client() as client:
        found = client.get("/api/runs", params={"session": "filtered"}).json()["data"]
        assert len(found) == 5 and {run["session_id"] for run in found} == {"filtered"}
        both = client.get("/api/runs", params={"session": "filtered", "deployment": PRICED}).json()["data"]
        assert [run["deployment"] for run in both] == [PRICED]
        assert client.get("/api/runs", params={"session": "nobody"}).json()["data"] == []
        export = client.get("/api/runs/export", params={"session": "filtered", "format": "csv"})
    header, *rows = export.text.splitlines()
    assert "session_id" in header.split(",") and len(rows) == 5


def test_a_session_is_its_runs_in_order_with_totals(hive: tuple[Deck, FakeOpenAI]) -> None:
    deck, _ = hive
    ids = []
    for dialect, deployment in (
        ("fetchhive", "fast"),
        ("openai", PRICED),
        ("vellum", "fast"),
        ("openai", PRICED),
    ):
        ids.append(request_id(dialect, call(deck, dialect, deployment, headers={HEADER: "conversation-1"})))
    answer = get_session(deck, "conversation-1")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["session_id"] == "conversation-1" and body["next_cursor"] is None
    runs = body["data"]
    assert ids_of(runs) == ids  # oldest first
    totals = body["totals"]
    assert totals["runs"] == 4 and totals["errors"] == 0
    assert totals["input_tokens"] == sum(run["input_tokens"] for run in runs) == 44  # 11 a call
    assert totals["output_tokens"] == sum(run["output_tokens"] for run in runs) == 16
    priced = [run["cost"] for run in runs if run["cost"] is not None]
    assert len(priced) == 2 and totals["unpriced_runs"] == 2
    assert totals["cost"] == pytest.approx(sum(priced)) and totals["cost"] > 0
    assert totals["deployments"] == [{"deployment": "fast", "runs": 2}, {"deployment": PRICED, "runs": 2}]
    first, last = (datetime.fromisoformat(totals[key]) for key in ("first_at", "last_at"))
    assert first == datetime.fromisoformat(runs[0]["created_at"])
    assert last == datetime.fromisoformat(runs[-1]["created_at"])
    span = (last - first).total_seconds() * 1000 + runs[-1]["duration_ms"]
    assert totals["span_ms"] == pytest.approx(span, abs=0.01)


def test_a_long_session_is_paged_and_totalled_whole(hive: tuple[Deck, FakeOpenAI]) -> None:
    deck, _ = hive
    ids = [request_id("fetchhive", call(deck, "fetchhive", headers={HEADER: "long"})) for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        body = get_session(deck, "long", limit=2, **({"cursor": cursor} if cursor else {})).json()
        assert body["totals"]["runs"] == 5
        seen += ids_of(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids


def test_an_unknown_session_is_a_404_and_reading_needs_only_the_read_scope(
    hive: tuple[Deck, FakeOpenAI],
) -> None:
    deck, _ = hive
    missing = get_session(deck, "never-used")
    assert missing.status_code == 404 and "never-used" in missing.json()["error"]["message"]
    call(deck, "traceport", headers={HEADER: "readable"})
    with deck.client() as client:
        reader = client.post("/api/keys", json={"name": "reader", "scopes": ["read"]}).json()["api_key"]
        invoker = client.post("/api/keys", json={"name": "caller", "scopes": ["invoke"]}).json()["api_key"]
    deck.flush()
    with deck.client(reader) as client:
        assert client.get("/api/sessions/readable").json()["totals"]["runs"] == 1
    with deck.client(invoker) as client:
        assert client.get("/api/sessions/readable").status_code == 403


def test_sessions_belong_to_their_workspace_and_work_on_each_database(
    upstream: FakeOpenAI, database_url: str, tmp_path: Any
) -> None:
    with deck_over(upstream.url, database_url, tmp_path) as deck:
        for _ in range(2):
            call(deck, "openai", headers={HEADER: "shared-name"})
        call(deck, "openai", headers={HEADER: "other"})
        body = get_session(deck, "shared-name").json()
        assert body["totals"]["runs"] == 2 and len(body["data"]) == 2
        with deck.client() as client:
            found = client.get("/api/runs", params={"session": "shared-name"}).json()["data"]
        assert len(found) == 2
