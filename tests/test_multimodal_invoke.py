"""Image parts end to end (issue 18): a version whose user message has an image part bound to an
`image` input, saved through the admin API and invoked through the Fetch Hive dialect with an
https URL; the upstream (a fake OpenAI on loopback) gets the image part, and the run keeps the
URL, or for a data: URL only its media type, size and SHA-256. Models that cannot take a part
are refused before any upstream call."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx
import pytest

from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, StartDeck, expect_hive_error, run_of

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck

PHOTO = "https://images.example.com/photos/cat.jpg"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def version(model: str = "openai/gpt-4o", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": "You describe pictures."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe this for {{ audience }}."},
                    {"type": "image", "source": "{{ photo }}", "detail": "low"},
                ],
            },
        ],
        "inputs": {"photo": {"type": "image"}, "audience": {"type": "string"}},
        **extra,
    }


def deploy(deck: Deck, slug: str, body: dict[str, Any]) -> None:
    """A prompt, one version of it (`body`) and a deployment named like the prompt."""
    with deck.client() as client:
        assert client.post("/api/prompts", json={"slug": slug}).status_code == 201
        saved = client.post(f"/api/prompts/{slug}/versions", json=body)
        assert saved.status_code == 201, saved.text
        made = client.post("/api/deployments", json={"name": slug, "prompt": slug})
        assert made.status_code == 201, made.text


def invoke(deck: Deck, deployment: str, inputs: dict[str, Any]) -> httpx.Response:
    with deck.client() as client:
        return client.post("/v1/prompt/invoke", json={"deployment": deployment, "inputs": inputs})


@pytest.mark.parametrize("syntax", ["default", "jinja2"])  # jinja2: rendered in the worker processes
def test_an_image_input_reaches_the_upstream_as_an_image_part(
    upstream: FakeOpenAI, start_deck: StartDeck, syntax: str
) -> None:
    deck = start_deck()
    deploy(deck, "describe", version(template_syntax=syntax))

    response = invoke(deck, "describe", {"photo": PHOTO, "audience": "kids"})

    assert response.status_code == 200, response.text
    assert upstream.requests[-1]["messages"] == [
        {"role": "system", "content": "You describe pictures."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe this for kids."},
                {"type": "image_url", "image_url": {"url": PHOTO, "detail": "low"}},
            ],
        },
    ]
    run = run_of(deck, response.json()["request_id"])
    assert run["inputs"]["photo"] == PHOTO
    assert run["messages"][1]["content"][1] == {"type": "image", "source": PHOTO, "detail": "low"}


def test_a_data_url_goes_upstream_whole_but_the_run_keeps_only_its_digest(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    deck = start_deck()
    deploy(deck, "describe", version())

    response = invoke(deck, "describe", {"photo": PNG_URL, "audience": "kids"})

    assert response.status_code == 200, response.text
    sent = upstream.requests[-1]["messages"][1]["content"][1]
    assert sent == {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}}
    digest = {"media_type": "image/png", "size": len(PNG), "sha256": hashlib.sha256(PNG).hexdigest()}
    run = run_of(deck, response.json()["request_id"])
    assert run["inputs"]["photo"] == digest
    assert run["messages"][1]["content"][1] == {"type": "image", "source": digest, "detail": "low"}
    with deck.client() as client:
        assert PNG_URL[30:90] not in client.get(f"/api/runs/{response.json()['request_id']}").text


@pytest.mark.parametrize(
    ("photo", "says"),
    [
        ("http://images.example.com/cat.jpg", "photo (expected image: expected an https URL or a data: URL"),
        ("data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=", "image/svg+xml is not allowed here"),
        (PNG_URL + "A" * 400, "is over this server's limit of 256"),
    ],
)
def test_an_image_the_server_does_not_take_is_refused_before_the_call(
    upstream: FakeOpenAI, start_deck: StartDeck, photo: str, says: str
) -> None:
    deck = start_deck(media_max_bytes=256)
    deploy(deck, "describe", version())

    message = expect_hive_error(
        invoke(deck, "describe", {"photo": photo, "audience": "kids"}), 422, "validation_error"
    )

    assert says in message
    assert upstream.requests == []


def test_the_embedded_model_refuses_an_image_naming_the_model_and_the_part(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    deck = start_deck()
    deploy(deck, "local-describe", version(model="local/smollm2-135m-instruct"))

    response = invoke(deck, "local-describe", {"photo": PHOTO, "audience": "kids"})

    message = expect_hive_error(response, 422, "validation_error")
    assert "model 'local/smollm2-135m-instruct' cannot take image parts: it reads text only" in message
    deck.flush()
    (run,) = [r for r in deck.runs() if r["deployment"] == "local-describe"]
    assert (run["status"], run["error_code"]) == ("error", "validation_error")  # refused, still logged


def test_a_text_only_openai_model_is_refused(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    deck = start_deck()
    deploy(deck, "old-model", version(model="openai/gpt-3.5-turbo"))

    old = expect_hive_error(
        invoke(deck, "old-model", {"photo": PHOTO, "audience": "a"}), 422, "validation_error"
    )

    assert "model 'openai/gpt-3.5-turbo' cannot take image parts" in old
    assert upstream.requests == []  # a PDF by URL is fetched first: tests/test_media_fetch.py
