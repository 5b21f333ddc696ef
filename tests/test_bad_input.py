"""Bad input on the Fetch Hive endpoints gets the right status, a clear message in the dialect's
envelope, and costs nothing: after every case the server still serves a normal invoke, and
requests that reached the engine are logged as failed runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import (
    INPUTS,
    FakeOpenAI,
    Script,
    StartDeck,
    expect_hive_error,
    push_prompt,
)

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck
hive, db_deck = fake_openai.hive, fake_openai.db_deck

PATHS = ("/v1/prompt/invoke", "/v1/invoke")
MIB = 1024 * 1024
INVALID_ACCESS = {"error": "Invalid access.", "message": "Invalid access.", "error_code": "unauthorized"}


def invoke(deck: Deck, body: Any, key: str | None = None, path: str = PATHS[0]) -> httpx.Response:
    """POST an invoke; `body` is sent as-is when it is bytes, as JSON otherwise."""
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    with deck.client(key) as client:
        return client.post(path, content=content, headers={"Content-Type": "application/json"})


def fast(**fields: Any) -> dict[str, Any]:
    return {"deployment": "fast", "inputs": INPUTS, **fields}


def assert_serves(deck: Deck) -> None:
    """The server still answers a normal invoke, streamed and not."""
    response = invoke(deck, fast())
    assert response.status_code == 200, response.text
    assert response.json()["response"] == Script().text
    with deck.client() as client:
        streamed = client.post(PATHS[0], json=fast(streaming=True))
    assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")


def expect_admin_error(response: httpx.Response, status: int, code: str) -> str:
    """Check an admin API error answer; returns its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code and body["error"]["message"]
    return str(body["error"]["message"])


def new_key(deck: Deck, scopes: list[str]) -> dict[str, Any]:
    with deck.client() as client:
        response = client.post("/api/keys", json={"name": "app", "scopes": scopes})
    assert response.status_code == 201, response.text
    return dict(response.json())


# ── bodies the dialect refuses before the engine sees them ──────────────────

MALFORMED = {
    "truncated-json": (b'{"deployment": "fast", "inputs": {', "not valid JSON"),
    "not-json-at-all": (b"deployment=fast", "not valid JSON"),
    "empty-body": (b"", "empty"),
    "array": (b'["fast"]', "JSON object"),
    "string": (b'"fast"', "JSON object"),
    "number": (b"42", "JSON object"),
    "null": (b"null", "JSON object"),
}

WRONG_FIELDS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "deployment-missing": ({"inputs": INPUTS}, ("deployment",)),
    "deployment-empty": (fast(deployment=""), ("deployment",)),
    "deployment-not-a-string": (fast(deployment=42), ("deployment",)),
    "deployment-a-list": (fast(deployment=["fast"]), ("deployment",)),
    "inputs-a-list": (fast(inputs=["text"]), ("inputs",)),
    "inputs-a-string": (fast(inputs="text=hi"), ("inputs",)),
    "streaming-a-string": (fast(streaming="yes"), ("streaming",)),
    "streaming-a-number": (fast(streaming=1), ("streaming",)),
    "variant-a-number": (fast(variant=2), ("variant",)),
    "user-an-object": (fast(user={"id": 1}), ("user",)),
    "metadata-nested-object": (fast(metadata={"team": {"name": "growth"}}), ("metadata", "team")),
    "metadata-list-value": (fast(metadata={"tags": ["a", "b"]}), ("metadata", "tags")),
    "metadata-empty-key": (fast(metadata={"": "x"}), ("metadata", "non-empty")),
    "metadata-a-list": (fast(metadata=[["k", "v"]]), ("metadata",)),
    "every-problem-at-once": (
        {"deployment": 7, "inputs": [], "streaming": "no", "metadata": {"a": {}}},
        ("deployment", "inputs", "streaming", "metadata"),
    ),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", MALFORMED)
def test_a_body_that_is_not_a_json_object_is_a_422(hive: Deck, case: str, path: str) -> None:
    body, says = MALFORMED[case]
    assert says in expect_hive_error(invoke(hive, body, path=path), 422, "validation_error")
    assert_serves(hive)


@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", WRONG_FIELDS)
def test_wrong_fields_are_a_422_naming_each(hive: Deck, case: str, path: str, streaming: bool) -> None:
    body, names = WRONG_FIELDS[case]
    if streaming:
        body = {"streaming": True, **body}
    message = expect_hive_error(invoke(hive, body, path=path), 422, "validation_error")
    assert all(name in message for name in names), message
    assert_serves(hive)


# ── requests the engine refuses ─────────────────────────────────────────────


@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("path", PATHS)
def test_unknown_deployment_and_variant_are_404s(hive: Deck, path: str, streaming: bool) -> None:
    missing = invoke(hive, fast(deployment="no-such-deployment", streaming=streaming), path=path)
    assert "no-such-deployment" in expect_hive_error(missing, 404, "not_found")

    wrong_variant = invoke(hive, fast(variant="gamma", streaming=streaming), path=path)
    message = expect_hive_error(wrong_variant, 404, "not_found")
    assert "gamma" in message and "beta, default" in message
    assert_serves(hive)


@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    "inputs, missing",
    [
        ({}, ("audience", "text")),
        ({"text": None, "audience": None}, ("audience", "text")),
        ({"audience": "kids"}, ("text",)),
    ],
    ids=["none-given", "all-null", "one-missing"],
)
def test_missing_required_inputs_are_a_422_naming_every_one(
    hive: Deck, inputs: dict[str, Any], missing: tuple[str, ...], streaming: bool
) -> None:
    message = expect_hive_error(
        invoke(hive, fast(inputs=inputs, streaming=streaming)), 422, "validation_error"
    )
    assert "missing required input" in message
    assert all(name in message for name in missing), message
    assert ("audience" in message) == ("audience" in missing)
    assert_serves(hive)


def test_an_input_of_the_wrong_type_is_a_422(hive: Deck) -> None:
    message = expect_hive_error(invoke(hive, fast(inputs={**INPUTS, "text": 5})), 422, "validation_error")
    assert "text" in message and "string" in message
    assert_serves(hive)


def test_failures_that_reached_the_engine_are_logged_and_malformed_bodies_are_not(db_deck: Deck) -> None:
    ghost = "ghost-" + uuid.uuid4().hex[:8]
    expect_hive_error(invoke(db_deck, fast(deployment=ghost, user="u-1")), 404, "not_found")
    expect_hive_error(invoke(db_deck, fast(deployment=ghost, streaming=True)), 404, "not_found")
    expect_hive_error(invoke(db_deck, fast(variant="gamma")), 404, "not_found")
    expect_hive_error(
        invoke(db_deck, fast(inputs={"audience": "kids"}, metadata={"n": 1})), 422, "validation_error"
    )
    for body in (b"{", fast(metadata={"a": [1]}), {"inputs": INPUTS}):
        expect_hive_error(invoke(db_deck, body), 422, "validation_error")

    failed = [r for r in db_deck.runs() if r["status"] == "error"]
    assert len(failed) == 4, "only requests that reached the engine are runs"
    ghosts = [r for r in failed if r["deployment"] == ghost]
    assert sorted(r["streamed"] for r in ghosts) == [False, True]
    assert all(r["error_code"] == "not_found" and ghost in r["error_message"] for r in ghosts)
    assert any(r["end_user"] == "u-1" for r in ghosts)
    (variant,) = [r for r in failed if r["variant"] == "gamma"]
    assert variant["error_code"] == "not_found" and variant["deployment"] == "fast"
    (inputs,) = [r for r in failed if r["error_code"] == "validation_error"]
    assert inputs["deployment"] == "fast" and inputs["version_number"] == 1
    assert inputs["inputs"] == {"audience": "kids"} and inputs["metadata"] == {"n": 1}
    assert "text" in inputs["error_message"] and inputs["output"] == ""
    assert_serves(db_deck)


# ── size limits ─────────────────────────────────────────────────────────────


def body_of_size(size: int) -> bytes:
    """A valid invoke body of exactly `size` bytes."""
    shell = orjson.dumps(fast(inputs={**INPUTS, "text": ""}))
    return orjson.dumps(fast(inputs={**INPUTS, "text": "x" * (size - len(shell))}))


def in_pieces(body: bytes, piece: int = 64 * 1024) -> Iterator[bytes]:
    """The body as a generator, so httpx sends it chunked, without Content-Length."""
    for start in range(0, len(body), piece):
        yield body[start : start + piece]


def post_chunked(deck: Deck, body: bytes, streaming: bool = False) -> httpx.Response:
    with deck.client() as client:
        response = client.post(
            PATHS[0], content=in_pieces(body), headers={"Content-Type": "application/json"}
        )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    return response


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_default_1_mib_limit_is_a_413(hive: Deck, chunked: bool) -> None:
    too_big = body_of_size(MIB + 1)
    response = post_chunked(hive, too_big) if chunked else invoke(hive, too_big)
    assert str(MIB) in expect_hive_error(response, 413, "payload_too_large")
    assert_serves(hive)

    at_limit = body_of_size(MIB)
    response = post_chunked(hive, at_limit) if chunked else invoke(hive, at_limit)
    assert response.status_code == 200, response.text[:300]


def test_a_streaming_request_over_the_limit_is_a_plain_413(hive: Deck) -> None:
    body = orjson.dumps(fast(streaming=True, inputs={**INPUTS, "text": "x" * (2 * MIB)}))
    response = invoke(hive, body)
    expect_hive_error(response, 413, "payload_too_large")


def test_the_body_limit_follows_the_settings(start_deck: StartDeck) -> None:
    deck = start_deck(max_body_bytes=4096)
    for response in (invoke(deck, body_of_size(4097)), post_chunked(deck, body_of_size(5000))):
        assert "4096" in expect_hive_error(response, 413, "payload_too_large")
    assert invoke(deck, body_of_size(4096)).status_code == 200
    assert post_chunked(deck, body_of_size(4000)).status_code == 200
    assert_serves(deck)


# ── keys and workspaces ─────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer pd_not-a-real-key", "Basic dXNlcjpwYXNz", "pd_no-scheme"],
    ids=["missing", "empty-bearer", "unknown-key", "basic-auth", "no-scheme"],
)
def test_a_bad_or_missing_key_is_a_401(hive: Deck, header: str | None) -> None:
    headers = {"Content-Type": "application/json"} | ({"Authorization": header} if header else {})
    for path in PATHS:
        response = httpx.post(hive.url + path, content=orjson.dumps(fast()), headers=headers)
        expect_hive_error(response, 401, "unauthorized")
        assert response.json() == INVALID_ACCESS
    assert_serves(hive)


def test_a_revoked_key_is_refused_at_once(db_deck: Deck) -> None:
    key = new_key(db_deck, ["invoke"])
    secret = key["api_key"]
    answered = invoke(db_deck, fast(), key=secret)  # the key is now in the key cache
    assert answered.status_code == 200, answered.text
    request_id = answered.json()["request_id"]

    with db_deck.client() as client:
        revoked = client.post(f"/api/keys/{key['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]

    for path in PATHS:
        for streaming in (False, True):
            response = invoke(db_deck, fast(streaming=streaming), key=secret, path=path)
            expect_hive_error(response, 401, "unauthorized")
            assert response.json() == INVALID_ACCESS
    with db_deck.client(secret) as client:
        lookup = client.get(f"/v1/public/requests/{request_id}")
    assert lookup.status_code == 401 and lookup.json() == INVALID_ACCESS
    with db_deck.client() as client:
        listed = {k["id"]: k for k in client.get("/api/keys").json()["data"]}
    assert listed[key["id"]]["revoked_at"]
    assert_serves(db_deck)


def test_another_workspace_cannot_see_or_invoke_this_one(upstream: FakeOpenAI, db_deck: Deck) -> None:
    upstream.scripts["theirs"] = Script(chunks=("their", " answer"))
    access = db_deck.services.access

    async def other_workspace() -> tuple[str, str]:
        workspace_id = await access.create_workspace("other team")
        _, invoke_key = await access.create_key(workspace_id, "their app", ["invoke"])
        _, admin_key = await access.create_key(workspace_id, "their admin", ["admin"])
        return invoke_key, admin_key

    their_invoke, their_admin = db_deck.live.call(other_workspace)
    ours = invoke(db_deck, fast())
    assert ours.status_code == 200
    request_id = ours.json()["request_id"]

    for streaming in (False, True):
        refused = invoke(db_deck, fast(streaming=streaming), key=their_invoke)
        assert "fast" in expect_hive_error(refused, 404, "not_found")
    for flushed in (False, True):  # while the run waits for the writer, then once stored
        if flushed:
            db_deck.flush()
        with db_deck.client(their_invoke) as client:
            expect_hive_error(client.get(f"/v1/public/requests/{request_id}"), 404, "not_found")
        with db_deck.client(their_admin) as client:
            expect_admin_error(client.get(f"/api/runs/{request_id}"), 404, "not_found")
    with db_deck.client(their_admin) as client:
        expect_admin_error(client.get("/api/deployments/fast"), 404, "not_found")
        assert all(r["request_id"] != request_id for r in client.get("/api/runs").json()["data"])

    push_prompt(db_deck.url, their_admin, "fast", "openai/theirs")  # same name, their own
    assert invoke(db_deck, fast(), key=their_invoke).json()["response"] == "their answer"
    assert invoke(db_deck, fast()).json()["response"] == Script().text
    with db_deck.client() as client:
        assert client.get(f"/v1/public/requests/{request_id}").json()["request_id"] == request_id
    assert_serves(db_deck)


def test_an_invoke_key_is_refused_on_the_admin_api(hive: Deck) -> None:
    secret = new_key(hive, ["invoke"])["api_key"]
    assert invoke(hive, fast(), key=secret).status_code == 200
    with hive.client(secret) as client:
        for method, path, body in [
            ("GET", "/api/prompts", None),
            ("GET", "/api/runs", None),
            ("POST", "/api/keys", {"name": "escalate", "scopes": ["admin"]}),
            ("POST", "/api/push", fake_openai.prompt_document("fast", "openai/hijack")),
        ]:
            response = client.request(method, path, json=body)
            assert "admin" in expect_admin_error(response, 403, "forbidden")
    assert_serves(hive)


# ── paths that do not exist ─────────────────────────────────────────────────

UNKNOWN_PATHS = [
    ("POST", "/v1/prompt/invoke/", 404, "not_found"),
    ("POST", "/v1/invoke/", 404, "not_found"),
    ("POST", "/v1/prompts/invoke", 404, "not_found"),
    ("GET", "/v1/nope", 404, "not_found"),
    ("GET", "/v1/", 404, "not_found"),  # "/" itself is the console
    ("GET", "/docs/", 404, "not_found"),
    ("GET", "/v1/prompt/invoke", 405, "method_not_allowed"),
    ("PUT", "/v1/invoke", 405, "method_not_allowed"),
]
UNKNOWN_ADMIN_PATHS = [
    ("GET", "/api/nope", 404, "not_found"),
    ("GET", "/api/prompts/", 404, "not_found"),
    ("POST", "/api/keys/", 404, "not_found"),
    ("DELETE", "/api/prompts", 405, "method_not_allowed"),
]


@pytest.mark.parametrize("method, path, status, code", UNKNOWN_PATHS + UNKNOWN_ADMIN_PATHS)
def test_unknown_paths_answer_json_in_the_dialects_shape_never_a_redirect(
    hive: Deck, method: str, path: str, status: int, code: str
) -> None:
    with hive.client() as client:
        response = client.request(method, path, json=fast(), follow_redirects=False)
    assert "location" not in response.headers
    expect = expect_admin_error if path.startswith("/api") else expect_hive_error
    message = expect(response, status, code)
    assert path in message
    if status == 405:
        assert response.headers["allow"]
    assert_serves(hive)


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1/chat/completion", "openai"),
        ("/prompt/x", "openai"),
        ("/v1/execute-prompt-streams", "vellum"),
        ("/v1/nothing", "fetchhive"),
    ],
)
def test_unknown_paths_answer_in_the_shape_of_their_dialect(hive: Deck, path: str, shape: str) -> None:
    """A client that mistypes a path still gets an error its SDK can read."""
    with hive.client() as client:
        response = client.post(path, json={})
    assert response.status_code == 404
    body = response.json()
    if shape == "openai":
        assert set(body) == {"error"} and {"message", "type", "code"} <= set(body["error"])
    elif shape == "vellum":
        assert set(body) == {"detail"}
    else:
        assert body["error_code"] == "not_found"
