"""Sessions from the real clients, unchanged: `fetch-hive-sdk` through its `metadata`, `openai`
through `metadata` (chat completions) or `extra_headers`, and through its low-level `post`
(Traceport), and `vellum-ai` through `metadata` or `request_options`' additional headers. Each
lands in one session that `GET /api/sessions/{id}` reads back in order; a bad value reaches
each client as its own error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from fetch_hive_sdk import FetchHive
from openai import OpenAI
from openai.types.chat import ChatCompletion
from vellum import StringInputRequest, Vellum, VellumEnvironment
from vellum.client.errors import BadRequestError

from tests.conftest import Deck
from tests.support.fake_openai import INPUTS, FakeOpenAI, deck_over, run_of, sqlite_url

HEADER = "X-Promptdeck-Session-Id"
SESSION = "support-chat-7f3a"


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deck]:
    directory = tmp_path_factory.mktemp("session-clients")
    with FakeOpenAI() as server, deck_over(server.url, sqlite_url(directory), directory) as deck:
        yield deck


def openai_client(deck: Deck, path: str = "/v1") -> OpenAI:
    return OpenAI(base_url=deck.url + path, api_key=deck.admin_key, max_retries=0)


def vellum_client(deck: Deck) -> Vellum:
    env = VellumEnvironment(default=deck.url, predict=deck.url, documents=deck.url)
    return Vellum(api_key=deck.admin_key, environment=env, timeout=60)


def vellum_inputs() -> list[Any]:
    return [StringInputRequest(name=name, value=value) for name, value in INPUTS.items()]


def test_every_client_puts_its_calls_in_one_session(fake: Deck) -> None:
    hive = FetchHive(api_key=fake.admin_key, base_url=fake.url + "/v1")
    first = hive.invoke_prompt(deployment="fast", inputs=INPUTS, metadata={"session_id": SESSION, "turn": 1})
    chat = openai_client(fake).chat.completions
    message: Any = [{"role": "user", "content": "shorter, please"}]
    by_metadata = chat.create(
        model="fast", messages=message, metadata={"session_id": SESSION}, extra_body={"variables": INPUTS}
    )
    by_header = chat.create(
        model="fast", messages=message, extra_headers={HEADER: SESSION}, extra_body={"variables": INPUTS}
    )
    traceport = openai_client(fake, "").post(
        "/prompt/fast/run",
        body={"variables": INPUTS, "metadata": {"session_id": SESSION}},
        cast_to=ChatCompletion,
    )
    vellum = vellum_client(fake)
    by_vellum_metadata = vellum.execute_prompt(
        prompt_deployment_name="fast", inputs=vellum_inputs(), metadata={"session_id": SESSION}
    )
    by_vellum_header = vellum.execute_prompt(
        prompt_deployment_name="fast",
        inputs=vellum_inputs(),
        request_options={"additional_headers": {HEADER: SESSION}},
    )
    assert by_vellum_metadata.state == by_vellum_header.state == "FULFILLED"
    assert run_of(fake, first["request_id"])["metadata"] == {"turn": 1}

    fake.flush()
    with httpx.Client(base_url=fake.url, headers={"Authorization": f"Bearer {fake.admin_key}"}) as client:
        body = client.get(f"/api/sessions/{SESSION}").json()
    runs = body["data"]
    assert [run["dialect"] for run in runs] == [
        "fetchhive",
        "openai",
        "openai",
        "traceport",
        "vellum",
        "vellum",
    ]
    assert [run["request_id"] for run in runs[:4]] == [
        first["request_id"],
        by_metadata._request_id,
        by_header._request_id,
        traceport._request_id,
    ]
    assert [run["id"] for run in runs[4:]] == [
        by_vellum_metadata.execution_id.replace("-", ""),
        by_vellum_header.execution_id.replace("-", ""),
    ]
    assert body["totals"]["runs"] == 6 and body["totals"]["deployments"] == [
        {"deployment": "fast", "runs": 6}
    ]


def test_a_bad_session_reaches_each_client_as_its_error(fake: Deck) -> None:
    hive = FetchHive(api_key=fake.admin_key, base_url=fake.url + "/v1")
    with pytest.raises(httpx.HTTPStatusError) as refused:
        hive.invoke_prompt(deployment="fast", inputs=INPUTS, metadata={"session_id": "x" * 201})
    assert refused.value.response.status_code == 422
    assert "metadata.session_id" in refused.value.response.json()["message"]

    message: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.BadRequestError) as bad:
        openai_client(fake).chat.completions.create(
            model="fast", messages=message, metadata={"session_id": "a\nb"}, extra_body={"variables": INPUTS}
        )
    assert bad.value.param == "metadata.session_id" and bad.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as bad_header:
        openai_client(fake).chat.completions.create(
            model="fast",
            messages=message,
            extra_headers={HEADER: "y" * 201},
            extra_body={"variables": INPUTS},
        )
    assert HEADER in bad_header.value.message

    with pytest.raises(BadRequestError) as vellum_bad:
        vellum_client(fake).execute_prompt(
            prompt_deployment_name="fast", inputs=vellum_inputs(), metadata={"session_id": 7}
        )
    assert "metadata.session_id: expected a string; got 7" in str(vellum_bad.value.body)
