"""What a hostile probe sent, on a live server over loopback: JSON nested past what can be
written, numbers past what the database holds, times past the calendar's ends, sign-ins that
told members apart and locked them out, and answers without security headers. Each case
failed (a 500, a lost run, a leak) before its fix; now each is a clear error in the shape of
the endpoint's dialect, or simply works."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptdeck.domain.run_filters import VERSION_NUMBER_MAX
from promptdeck.surfaces.http import MAX_JSON_DEPTH, json_depth
from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.console_sign_in import signed_in_client
from tests.support.fake_openai import INPUTS, FakeOpenAI, deck_over, sqlite_url
from tests.support.invoking import invoke

upstream, hive, db_deck = fake_openai.upstream, fake_openai.hive, fake_openai.db_deck
PASSWORD = "correct horse battery"
HUGE = 9_999_999_999_999_999_999  # past SQLite's 64 bits
PAST_INT32 = VERSION_NUMBER_MAX + 1  # past PostgreSQL's integer column, within SQLite's


def message(response: httpx.Response, dialect: str, status: int) -> str:
    """The error's message, once the answer is that dialect's error shape with `status`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    if dialect == "hive":
        assert set(body) == {"error", "message", "error_code"} and body["error_code"] == "validation_error"
        return str(body["message"])
    if dialect == "vellum":
        assert set(body) == {"detail"}, body
        return str(body["detail"])
    assert list(body) == ["error"], body
    if dialect == "openai":
        assert body["error"]["type"] == "invalid_request_error", body
    else:
        assert set(body["error"]) == {"code", "message", "details"}, body
    return str(body["error"]["message"])


# ── JSON nested deeper than can be written ──────────────────────────────────


def deep_body(template: dict[str, Any], levels: int) -> bytes:
    """`template` as JSON with its "@" value made `levels` arrays inside each other (built as
    text: Python's own encoder gives up long before orjson does)."""
    return orjson.dumps(template).replace(b'"@"', b"[" * levels + b"1" + b"]" * levels)


JSON_PROMPT = {
    "prompt": "data",
    "model": "openai/fast",
    "messages": [{"role": "user", "content": "Read: {{data}}"}],
    "inputs": {"data": {"type": "json", "required": True}},
    "deploy": {"data": {"default": "latest"}},
}
DRAFT = {"model": "openai/fast", "messages": [{"role": "user", "content": "hi {{x}}"}]}
# (dialect, path, body with "@" where the nesting goes, levels around the "@")
DEEP_CASES = [
    ("hive", "/v1/prompt/invoke", {"deployment": "fast", "inputs": {**INPUTS, "extra": "@"}}, 2),
    ("hive", "/v1/invoke", {"deployment": "data", "inputs": {"data": "@"}}, 2),
    ("openai", "/v1/chat/completions", {"model": "fast", "messages": [], "metadata": "@"}, 1),
    ("openai", "/prompt/fast/run", {"variables": {**INPUTS, "extra": "@"}}, 2),
    ("vellum", "/v1/execute-prompt", {"prompt_deployment_name": "fast", "inputs": [{"value": "@"}]}, 3),
    ("vellum", "/v1/execute-prompt-stream", {"prompt_deployment_name": "fast", "metadata": "@"}, 1),
    ("vellum", "/v1/submit-completion-actuals", {"actuals": [{"id": "x", "metadata": "@"}]}, 3),
    ("vellum", "/v1/deployments/provider-payload", {"deployment_name": "fast", "inputs": "@"}, 1),
    ("admin", "/api/push", {**JSON_PROMPT, "params": {"x": "@"}}, 2),
    ("admin", "/api/prompts/fast/versions", {**DRAFT, "params": {"x": "@"}}, 2),
    ("admin", "/api/deployments/fast/payload", {"inputs": {"data": "@"}}, 2),
    ("admin", "/api/playground/run", {"draft": DRAFT, "inputs": {"x": "@"}, "stream": False}, 2),
    ("admin", "/api/runs/any/feedback", {"thumbs": "up", "metadata": {"x": "@"}}, 2),
]


@pytest.mark.parametrize(
    ("dialect", "path", "template", "around"), DEEP_CASES, ids=[c[1] for c in DEEP_CASES]
)
def test_every_json_body_nested_past_the_limit_is_refused_in_its_dialect(
    hive: Deck, dialect: str, path: str, template: dict[str, Any], around: int
) -> None:
    headers = {"Content-Type": "application/json", "X-API-KEY": hive.admin_key}
    with hive.client() as client:
        for levels in (MAX_JSON_DEPTH + 1 - around, 300, 1_000, 100_000):
            answer = client.post(path, content=deep_body(template, levels), headers=headers)
            said = message(answer, dialect, 422 if dialect in ("hive", "admin") else 400)
            assert f"nests {levels + around} levels deep" in said and f"at most {MAX_JSON_DEPTH}" in said


def test_a_deep_json_input_is_refused_and_one_within_the_limit_is_rendered_and_logged(hive: Deck) -> None:
    """The attack: a `json` input 300 deep was a 500 (the template could not write it) and an
    undeclared one a 200 whose run was never stored."""
    headers = {"Content-Type": "application/json"}
    with hive.client() as client:
        assert client.post("/api/push", json=JSON_PROMPT).status_code == 200
        ok = [
            client.post(
                "/v1/prompt/invoke", content=deep_body({"deployment": "data", "inputs": {"data": "@"}}, n)
            )
            for n in (MAX_JSON_DEPTH - 2, 300)
        ]
        extra = {"deployment": "fast", "inputs": {**INPUTS, "extra": "@"}}
        ok += [
            client.post("/v1/prompt/invoke", content=deep_body(extra, n)) for n in (MAX_JSON_DEPTH - 2, 300)
        ]
        assert [r.status_code for r in ok] == [200, 422, 200, 422], [r.text[:200] for r in ok]
        logged = {r.json()["request_id"] for r in (ok[0], ok[2])}
        hive.flush()
        for request_id in logged:
            run = client.get(f"/api/runs/{request_id}", headers=headers)
            assert run.status_code == 200 and run.json()["status"] == "success", run.text[:300]
        rendered = client.get(f"/api/runs/{ok[0].json()['request_id']}").text
        assert "[" * (MAX_JSON_DEPTH - 2) + "1" + "]" * (MAX_JSON_DEPTH - 2) in rendered


def test_admin_bodies_are_parsed_as_the_dialects_are(hive: Deck) -> None:
    """FastAPI's own parser (the standard library's) let through integers past 64 bits and
    lone surrogates, which orjson then could not render: a 500 and no run."""
    draft = {**DRAFT, "inputs": {"x": {"type": "json"}}}
    body = orjson.dumps({"draft": draft, "inputs": {"x": {"n": "@"}}, "stream": False})
    headers = {"Content-Type": "application/json"}
    with hive.client() as client:
        huge = client.post(
            "/api/playground/run", content=body.replace(b'"@"', b"1" + b"0" * 30), headers=headers
        )
        assert huge.status_code == 200 and huge.json()["output"], huge.text[:300]
        lone = client.post(
            "/api/playground/run", content=body.replace(b'"@"', b'"a\\ud800"'), headers=headers
        )
        assert message(lone, "admin", 422) == "the request body is not valid JSON"
        version = orjson.dumps({**DRAFT, "params": {"seed": "@"}}).replace(b'"@"', b"1" + b"0" * 30)
        said = message(
            client.post("/api/prompts/fast/versions", content=version, headers=headers), "admin", 422
        )
        assert "params.seed: expected int" in said


def test_a_body_within_the_limit_is_not_refused_however_many_brackets_it_has(hive: Deck) -> None:
    """Wide is fine: the precheck counts brackets, the exact walk measures depth."""
    wide = {"deployment": "fast", "inputs": {**INPUTS, "rows": [[[i]] for i in range(5_000)]}}
    strings = {"deployment": "fast", "inputs": {**INPUTS, "text": "[{" * 5_000}}
    with hive.client() as client:
        for body in (wide, strings):
            answer = client.post("/v1/prompt/invoke", content=orjson.dumps(body))
            assert answer.status_code == 200, answer.text[:300]


def depth_of(value: Any) -> int:
    if isinstance(value, dict | list):
        inside = value.values() if isinstance(value, dict) else value
        return 1 + max(map(depth_of, inside), default=0)
    return 0


TRICKY_TEXT = st.text(alphabet='[]{}"\\\\/ab\n\u00e9\U0001f642', max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY_TEXT, inner, max_size=4),
    max_leaves=40,
)


@given(JSON_VALUES, st.booleans())
def test_json_depth_is_exact_whatever_the_strings_hold(value: Any, indented: bool) -> None:
    """Brackets, quotes and backslashes inside strings never count; whitespace does not matter."""
    raw = orjson.dumps(value, option=orjson.OPT_INDENT_2 if indented else 0)
    assert json_depth(raw) == depth_of(value)


# ── numbers past what the database holds ────────────────────────────────────


def test_version_numbers_past_the_column_are_refused_not_a_500(db_deck: Deck) -> None:
    with db_deck.client() as client:
        for number in (HUGE, PAST_INT32, 0):
            for answer in (
                client.get(f"/api/prompts/fast/versions/{number}"),
                client.get("/api/prompts/fast/diff", params={"from": number, "to": 1}),
                client.get("/api/prompts/fast/diff", params={"from": 1, "to": number}),
                client.put("/api/deployments/fast/variants/beta", json={"version": number}),
                client.post(
                    "/api/deployments", json={"name": "d2", "prompt": "fast", "variants": {"a": number}}
                ),
                client.post(
                    "/api/playground/run", json={"prompt": "fast", "version": number, "stream": False}
                ),
            ):
                assert "2147483647" in message(answer, "admin", 422) or number == 0, answer.text
            said = message(client.get("/api/runs", params={"version": number}), "admin", 422)
            assert f"up to {VERSION_NUMBER_MAX}" in said
        document = {
            **fake_openai.prompt_document("fast", "openai/fast"),
            "deploy": {"fast": {"beta": PAST_INT32}},
        }
        said = message(client.post("/api/push", json=document), "admin", 404)
        assert f"no version {PAST_INT32}: version numbers run from 1 to {VERSION_NUMBER_MAX}" in said
        # the largest number the column holds is an ordinary unknown version
        message(client.get(f"/api/prompts/fast/versions/{VERSION_NUMBER_MAX}"), "admin", 404)
        assert client.get("/api/runs", params={"version": VERSION_NUMBER_MAX}).json()["data"] == []


def test_the_console_answers_an_overflowing_version_with_a_404_page(db_deck: Deck) -> None:
    email = "vera@example.com"
    db_deck.live.call(
        lambda: db_deck.services.members.create(db_deck.workspace_id, email, PASSWORD, "viewer")
    )
    with signed_in_client(db_deck.url, email, PASSWORD) as (client, _):
        for query in (f"version={HUGE}", f"from={PAST_INT32}"):
            page = client.get(f"/prompts/fast?{query}")
            assert page.status_code == 404 and "no version" in page.text, page.text[:300]
        page = client.get(f"/prompts/fast/diff?from=1&to={PAST_INT32}")
        assert page.status_code == 404, page.text[:300]
        page = client.get(f"/logs?version={HUGE}")
        assert page.status_code != 500 and "up to 2147483647" in page.text


# ── times past the calendar's ends ──────────────────────────────────────────


def test_usage_and_run_filters_at_the_calendars_ends_are_refused_not_a_500(db_deck: Deck) -> None:
    with db_deck.client() as client:
        for params in (
            {"from": "0001-01-01T00:00:00", "to": "9999-12-31T23:59:59"},
            {"to": "9999-12-31T23:59:59", "bucket": "day"},
            {"to": "0001-01-01T00:00:00"},
            {"to": "0001-01-01T10:00:00", "bucket": "day"},
        ):
            said = message(client.get("/api/usage", params=params), "admin", 422)
            assert "within the years 1 to 9999 in UTC" in said, params
        said = message(client.get("/api/usage", params={"from": "0001-01-01T00:00:00+05:00"}), "admin", 422)
        assert "from: '0001-01-01T00:00:00+05:00' is outside years 1 to 9999 in UTC" in said
        said = message(
            client.get("/api/usage", params={"from": "0001-01-01", "to": "9999-12-30"}), "admin", 422
        )
        assert "narrow the range" in said
        for params in ({"since": "0001-01-01T00:00:00+05:00"}, {"until": "9999-12-31T23:59:59-05:00"}):
            said = message(client.get("/api/runs", params=params), "admin", 422)
            assert "is outside years 1 to 9999 in UTC" in said
            said = message(client.get("/api/runs/export", params=params), "admin", 422)
        # the calendar's own ends are ordinary bounds
        widest = {"since": "0001-01-01T00:00:00Z", "until": "9999-12-31T23:59:59Z"}
        assert client.get("/api/runs", params=widest).status_code == 200
        usage = client.get("/api/usage", params={"from": "9999-12-01T00:00:00", "to": "9999-12-31T00:00:00"})
        assert usage.status_code == 200, usage.text


def test_the_console_usage_page_at_the_calendars_ends_answers_not_a_500(db_deck: Deck) -> None:
    email = "uma@example.com"
    db_deck.live.call(
        lambda: db_deck.services.members.create(db_deck.workspace_id, email, PASSWORD, "viewer")
    )
    with signed_in_client(db_deck.url, email, PASSWORD) as (client, _):
        page = client.get("/usage?range=custom&from=0001-01-01&to=9999-12-31")
        assert page.status_code != 500 and "to: must be before 9999-12-31" in page.text, page.text[:300]
        page = client.get("/usage?range=custom&from=0001-01-01&to=0001-01-03")
        assert page.status_code == 200, page.text[:300]


def test_a_forged_cursor_past_signed_64_bits_is_refused_not_a_500(db_deck: Deck) -> None:
    forged = base64.urlsafe_b64encode(b'{"s":"cost","o":"desc","v":9223372036854775813,"k":"x"}').decode()
    with db_deck.client() as client:
        said = message(client.get("/api/runs", params={"sort": "cost", "cursor": forged}), "admin", 422)
    assert "cursor: not one this server gave out" in said


def test_a_nul_character_is_stored_as_u_fffd_or_refused_never_a_500_or_a_lost_run(db_deck: Deck) -> None:
    """PostgreSQL's text and jsonb hold no NUL: a run carrying one is still logged, and an admin
    write that would store one is a 422 there (SQLite stores it)."""
    nul = "a\u0000b"
    with db_deck.client() as client:
        body = {"deployment": "fast", "inputs": INPUTS | {"text": nul}, "user": nul, "metadata": {"k": nul}}
        answer = client.post("/v1/prompt/invoke", json=body)
        assert answer.status_code == 200, answer.text
        request_id = answer.json()["request_id"]
        db_deck.flush()
        run = client.get(f"/api/runs/{request_id}").json()
        assert run["end_user"] in (nul, "a\ufffdb") and run["metadata"]["k"] in (nul, "a\ufffdb")
        assert run["inputs"]["text"] in (nul, "a\ufffdb")
        assert db_deck.services.writer.metrics.failed == 0

        created = client.post("/api/keys", json={"name": nul, "scopes": ["read"]})
        assert created.status_code in (201, 422), created.text
        if created.status_code == 422:
            assert "NUL character" in message(created, "admin", 422)
        for params in ({"q": nul}, {"deployment": nul}):
            assert client.get("/api/runs", params=params).status_code in (200, 422)
        assert client.get("/api/runs/a%00b").status_code in (404, 422)


# ── signing in ──────────────────────────────────────────────────────────────


def sign_in(client: httpx.Client, email: str, password: str) -> httpx.Response:
    client.get("/sign-in")
    token = client.cookies["promptdeck_form_csrf"]
    return client.post("/sign-in", data={"email": email, "password": password, "csrf_token": token})


def alert(page: httpx.Response) -> str:
    return page.text.split('role="alert">', 1)[1].split("</p>", 1)[0]


def from_address(deck: Deck, address: str) -> httpx.Client:
    """A browser-like client whose connections come from `address` (any of 127.0.0.0/8)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=deck.url, transport=transport, trust_env=False, timeout=30)


def test_sign_in_tells_no_one_who_is_a_member_and_no_one_can_lock_a_member_out(hive: Deck) -> None:
    """Before: only a member's email got "4 more failed attempts lock this member", and five
    anonymous tries locked that member for 15 minutes, wherever they signed in from."""
    email = "mia@example.com"
    hive.live.call(lambda: hive.services.members.create(hive.workspace_id, email, PASSWORD, "viewer"))
    with from_address(hive, "127.0.0.1") as attacker, from_address(hive, "127.0.0.2") as member:
        answers = [
            (sign_in(attacker, e, "wrong password!"), e) for _ in range(5) for e in (email, "no@example.com")
        ]
        for (mine, _), (theirs, _) in zip(answers[::2], answers[1::2], strict=True):
            assert (mine.status_code, alert(mine)) == (theirs.status_code, alert(theirs))
        assert [a.status_code for a, _ in answers] == [401] * 10
        assert "After 4 more failed attempts" in alert(answers[0][0])
        assert "try again in 1 minute" in alert(answers[-2][0])
        # the attacker's address now pauses for that email, right password or not, member or not
        for tried in (email, "no@example.com"):
            paused = sign_in(attacker, tried, PASSWORD)
            assert paused.status_code == 429 and 50 <= int(paused.headers["retry-after"]) <= 60
            assert "Too many failed sign-ins with this email from your address" in alert(paused)
        # the member, from their own address, signs in as ever
        assert sign_in(member, email, PASSWORD).status_code == 303
        assert member.get("/settings").status_code == 200


# ── files and headers ───────────────────────────────────────────────────────


def test_the_database_its_log_and_the_secret_key_are_the_owners_only(
    upstream: FakeOpenAI, tmp_path: Path
) -> None:
    data = tmp_path / "data"  # new: created by the server
    umask = os.umask(0o022)  # a usual umask: files 0644 unless created otherwise
    try:
        with deck_over(upstream.url, sqlite_url(data), data) as deck:
            assert invoke(deck, "fast").status_code == 200
            deck.flush()
            names = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.iterdir()}
    finally:
        os.umask(umask)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert {"promptdeck.db", "promptdeck.db-wal", "promptdeck.db-shm", "secret-key"} <= set(names)
    assert {name: mode for name, mode in names.items() if mode != 0o600} == {}


def test_every_answer_carries_the_security_headers(hive: Deck) -> None:
    with hive.client() as client:
        answers = {
            "docs": client.get("/docs"),
            "redoc": client.get("/redoc"),
            "openapi": client.get("/openapi.json"),
            "health": client.get("/api/health"),
            "invoke": client.post("/v1/prompt/invoke", json={"deployment": "fast", "inputs": INPUTS}),
            "stream": client.post(
                "/v1/prompt/invoke", json={"deployment": "fast", "inputs": INPUTS, "streaming": True}
            ),
            "unknown api path": client.get("/api/nope"),
            "sign-in page": client.get("/sign-in"),
            "console 404": client.get("/nope"),
            "static": client.get("/static/console.js"),
        }
    for name, answer in answers.items():
        assert answer.status_code < 500, name
        assert answer.headers["x-content-type-options"] == "nosniff", name
        assert answer.headers["x-frame-options"] == "DENY", name
        assert answer.headers["referrer-policy"] == "same-origin", name
        assert len(answer.headers.get_list("x-frame-options")) == 1, name  # the console's own kept
    docs = answers["docs"].headers["content-security-policy"]  # Swagger UI from installed assets
    assert "frame-ancestors 'none'" in docs and "https:" not in docs, "docs: no CDN allowed"
    assert answers["redoc"].status_code == 404  # ReDoc is not served: it needs a CDN
    console = answers["sign-in page"].headers["content-security-policy"]
    assert "script-src 'self';" in console and "unsafe-inline" not in console  # the console's, untouched
    assert "content-security-policy" not in answers["health"].headers
