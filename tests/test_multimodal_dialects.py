"""Images and documents through the Vellum, OpenAI and Traceport dialects (issue 18), on the
wire against a live server whose upstream is a fake OpenAI on loopback: what the upstream gets
(OpenAI's `image_url` and `file` parts), what the run keeps (a data: URL as its digest only),
and each refusal (AUDIO and VIDEO, uploaded-file references, a media type or size the server
does not take, a model that reads text only): a 400 in the dialect's shape, before any call."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx
import pytest

from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, StartDeck, run_of
from tests.test_multimodal_invoke import PHOTO, PNG, PNG_URL, deploy, version

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PDF_URL = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
PNG_DIGEST = {"media_type": "image/png", "size": len(PNG), "sha256": hashlib.sha256(PNG).hexdigest()}
PDF_DIGEST = {"media_type": "application/pdf", "size": len(PDF), "sha256": hashlib.sha256(PDF).hexdigest()}
AUDIENCE = {"type": "STRING", "name": "audience", "value": "kids"}


def plain(model: str = "openai/gpt-4o") -> dict[str, Any]:
    """A text-only version: images arrive in the caller's own messages."""
    return {"model": model, "messages": [{"role": "system", "content": "You describe pictures."}]}


def with_document() -> dict[str, Any]:
    """`version()` with a PDF part bound to a `report` document input."""
    body = version()
    body["messages"][1]["content"].append({"type": "document", "source": "{{ report }}", "name": "r.pdf"})
    body["inputs"]["report"] = {"type": "document"}
    return body


def vellum(deck: Deck, inputs: list[dict[str, Any]], deployment: str = "describe") -> httpx.Response:
    body = {"prompt_deployment_name": deployment, "inputs": inputs}
    headers = {"X-API-KEY": deck.admin_key}
    return httpx.post(deck.url + "/v1/execute-prompt", json=body, headers=headers, timeout=30)


def history(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"type": "CHAT_HISTORY", "name": "history", "value": list(messages)}


def openai_chat(deck: Deck, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {deck.admin_key}"}
    return httpx.post(deck.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)


def detail_of(response: httpx.Response) -> str:
    """A Vellum 400's `detail`."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"detail"}, body
    return str(body["detail"])


def openai_error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


def stored_run(deck: Deck, execution_id: str) -> dict[str, Any]:
    return run_of(deck, execution_id.replace("-", ""))


# ── Vellum ──────────────────────────────────────────────────────────────────


def test_vellum_image_and_document_inputs_bind_the_versions_inputs(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    deck = start_deck()
    deploy(deck, "describe", with_document())

    response = vellum(
        deck,
        [
            {"type": "IMAGE", "name": "photo", "value": {"src": PHOTO, "metadata": {"detail": "high"}}},
            {"type": "DOCUMENT", "name": "report", "value": {"src": PDF_URL}},
            AUDIENCE,
        ],
    )

    assert response.status_code == 200, response.text
    assert response.json()["state"] == "FULFILLED"
    assert upstream.requests[-1]["messages"][1]["content"] == [
        {"type": "text", "text": "Describe this for kids."},
        {"type": "image_url", "image_url": {"url": PHOTO, "detail": "low"}},  # the version's detail
        {"type": "file", "file": {"filename": "r.pdf", "file_data": PDF_URL}},
    ]
    run = stored_run(deck, response.json()["execution_id"])
    assert run["inputs"] == {"photo": PHOTO, "report": PDF_DIGEST, "audience": "kids"}
    assert run["messages"][1]["content"][2] == {"type": "document", "source": PDF_DIGEST, "name": "r.pdf"}


def test_vellum_chat_history_with_image_document_and_array_content(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    deck = start_deck()
    deploy(deck, "describe", plain())
    looked = {
        "role": "USER",
        "content": {
            "type": "ARRAY",
            "value": [
                {"type": "STRING", "value": "What is on this one?"},
                {"type": "IMAGE", "value": {"src": PNG_URL, "metadata": {"detail": "low"}}},
            ],
        },
    }

    response = vellum(
        deck,
        [
            history(
                {"role": "USER", "content": {"type": "IMAGE", "value": {"src": PHOTO}}},
                {"role": "ASSISTANT", "content": {"type": "STRING", "value": "A cat."}},
                {"role": "USER", "content": {"type": "DOCUMENT", "value": {"src": PDF_URL}}},
                looked,
            )
        ],
    )

    assert response.status_code == 200, response.text
    assert upstream.requests[-1]["messages"][1:] == [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PHOTO}}]},
        {"role": "assistant", "content": "A cat."},
        {
            "role": "user",
            "content": [{"type": "file", "file": {"filename": "document.pdf", "file_data": PDF_URL}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is on this one?"},
                {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}},
            ],
        },
    ]
    run = stored_run(deck, response.json()["execution_id"])
    assert run["messages"][3]["content"] == [{"type": "document", "source": PDF_DIGEST}]
    assert run["messages"][4]["content"][1] == {"type": "image", "source": PNG_DIGEST, "detail": "low"}
    with deck.client() as client:
        whole = client.get(f"/api/runs/{response.json()['execution_id'].replace('-', '')}").text
    assert PNG_URL[30:90] not in whole and PDF_URL[30:60] not in whole


REFUSED_VELLUM: list[tuple[str, list[dict[str, Any]], str]] = [
    (
        "audio input",
        [{"type": "AUDIO", "name": "clip", "value": {"src": "https://sounds.example.com/a.mp3"}}],
        "inputs[0].type (input 'clip'): AUDIO inputs are not supported: no provider promptdeck calls",
    ),
    (
        "video input",
        [{"type": "VIDEO", "name": "film", "value": {"src": "https://films.example.com/a.mp4"}}],
        "(input 'film'): VIDEO inputs are not supported",
    ),
    (
        "video chat content",
        [
            history(
                {"role": "USER", "content": {"type": "VIDEO", "value": {"src": "https://x.example/v.mp4"}}}
            )
        ],
        "inputs[0].value[0].content.type (input 'history'): VIDEO content is not supported",
    ),
    (
        "audio in an array",
        [
            history(
                {
                    "role": "USER",
                    "content": {
                        "type": "ARRAY",
                        "value": [{"type": "AUDIO", "value": {"src": "https://a/b"}}],
                    },
                }
            )
        ],
        "inputs[0].value[0].content.value[0].type (input 'history'): AUDIO content is not supported",
    ),
    (
        "uploaded file input",
        [{"type": "IMAGE", "name": "photo", "value": {"src": "vellum:uploaded-file:9f2c"}}],
        "inputs[0].value.src (input 'photo'): a Vellum uploaded-file reference",
    ),
    (
        "uploaded file in chat",
        [
            history(
                {"role": "USER", "content": {"type": "DOCUMENT", "value": {"src": "vellum:uploaded-file:1"}}}
            )
        ],
        "promptdeck keeps no uploaded files",
    ),
    (
        "an image from the assistant",
        [history({"role": "ASSISTANT", "content": {"type": "IMAGE", "value": {"src": PHOTO}}})],
        "only USER messages may carry IMAGE content; this one is ASSISTANT",
    ),
    (
        "a pdf as an image",
        [{"type": "IMAGE", "name": "photo", "value": {"src": PDF_URL}}],
        "images cannot be application/pdf",
    ),
    (
        "a media type the server refuses, in chat",
        [
            history(
                {"role": "USER", "content": {"type": "IMAGE", "value": {"src": "data:image/bmp;base64,Qk0="}}}
            )
        ],
        "messages[0].content[0].source: image/bmp is not allowed here",
    ),
]


@pytest.mark.parametrize(("case", "inputs", "says"), REFUSED_VELLUM, ids=[c[0] for c in REFUSED_VELLUM])
def test_vellum_refuses_media_it_cannot_take_with_a_400_naming_it(
    upstream: FakeOpenAI, start_deck: StartDeck, case: str, inputs: list[dict[str, Any]], says: str
) -> None:
    deck = start_deck()
    deploy(deck, "describe", plain())

    assert says in detail_of(vellum(deck, inputs))
    assert upstream.requests == []


def test_vellum_image_for_the_embedded_model_names_the_model_and_the_part(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    deck = start_deck()
    deploy(deck, "local-describe", version(model="local/smollm2-135m-instruct"))

    response = vellum(
        deck, [{"type": "IMAGE", "name": "photo", "value": {"src": PHOTO}}, AUDIENCE], "local-describe"
    )

    assert "model 'local/smollm2-135m-instruct' cannot take image parts" in detail_of(response)


# ── OpenAI and Traceport ────────────────────────────────────────────────────


def test_openai_image_url_and_file_parts_in_appended_messages(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    deck = start_deck()
    deploy(deck, "describe", plain())
    parts = [
        {"type": "text", "text": "Compare these."},
        {"type": "image_url", "image_url": {"url": PHOTO, "detail": "high"}},
        {"type": "image_url", "image_url": PNG_URL},  # the URL alone, as some clients send it
        {"type": "file", "file": {"file_data": PDF_URL, "filename": "q3.pdf"}},
    ]

    response = openai_chat(deck, {"model": "describe", "messages": [{"role": "user", "content": parts}]})

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Hello, world!"
    assert upstream.requests[-1]["messages"][1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "Compare these."},
            {"type": "image_url", "image_url": {"url": PHOTO, "detail": "high"}},
            {"type": "image_url", "image_url": {"url": PNG_URL}},
            {"type": "file", "file": {"filename": "q3.pdf", "file_data": PDF_URL}},
        ],
    }
    run = run_of(deck, response.headers["x-request-id"])
    assert run["messages"][1]["content"][1:] == [
        {"type": "image", "source": PHOTO, "detail": "high"},
        {"type": "image", "source": PNG_DIGEST},
        {"type": "document", "source": PDF_DIGEST, "name": "q3.pdf"},
    ]


@pytest.mark.parametrize("dialect", ["openai", "traceport"])
def test_an_image_variable_is_a_url_string(upstream: FakeOpenAI, start_deck: StartDeck, dialect: str) -> None:
    deck = start_deck()
    deploy(deck, "describe", version())
    variables = {"photo": PNG_URL, "audience": "kids"}

    if dialect == "openai":
        response = openai_chat(deck, {"model": "describe", "messages": [], "variables": variables})
    else:
        headers = {"Authorization": f"Bearer {deck.admin_key}"}
        response = httpx.post(
            deck.url + "/prompt/describe/run", json={"variables": variables}, headers=headers, timeout=30
        )

    assert response.status_code == 200, response.text
    sent = upstream.requests[-1]["messages"][1]["content"][1]
    assert sent == {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}}
    run = run_of(deck, response.headers["x-request-id"])
    assert run["dialect"] == dialect and run["inputs"]["photo"] == PNG_DIGEST


def user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


REFUSED_OPENAI: list[tuple[str, list[dict[str, Any]], str, str]] = [
    (
        "file_id",
        user({"type": "file", "file": {"file_id": "file-abc123"}}),
        "messages[0].content[0].file.file_id",
        "an uploaded OpenAI file ('file-abc123') cannot be read here",
    ),
    (
        "file_data by URL",
        user({"type": "file", "file": {"file_data": "https://files.example.com/a.pdf"}}),
        "messages[0].content[0].file.file_data",
        "expected the file as a data: URL",
    ),
    (
        "an http image",
        user({"type": "image_url", "image_url": {"url": "http://images.example.com/a.png"}}),
        "messages[0].content[0].image_url.url",
        "expected an https URL or a data: URL",
    ),
    (
        "audio",
        user({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}),
        "messages[0].content[0].type",
        "input_audio parts are not supported",
    ),
    (
        "an image in a system message",
        [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": PHOTO}}]}],
        "messages[0].content",
        "image_url parts are taken in user messages only; this one is system",
    ),
    (
        "a media type the server refuses",
        user({"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}),
        "messages",
        "messages[0].content[0].source: image/bmp is not allowed here",
    ),
]


@pytest.mark.parametrize(
    ("case", "messages", "param", "says"), REFUSED_OPENAI, ids=[c[0] for c in REFUSED_OPENAI]
)
def test_openai_refuses_parts_it_cannot_take_with_a_400_naming_the_field(
    upstream: FakeOpenAI,
    start_deck: StartDeck,
    case: str,
    messages: list[dict[str, Any]],
    param: str,
    says: str,
) -> None:
    deck = start_deck()
    deploy(deck, "describe", plain())

    error = openai_error(openai_chat(deck, {"model": "describe", "messages": messages}))

    assert error["param"] == param and says in error["message"], error
    assert upstream.requests == []


# ── a chat_history input with parts (every dialect's `inputs`) ───────────────


def test_a_chat_history_input_takes_messages_with_parts(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    deck = start_deck()
    body = plain()
    body["messages"].append({"role": "user", "content": "{{ history }}"})
    body["inputs"] = {"history": {"type": "chat_history"}}
    deploy(deck, "describe", body)
    said = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "And this?"}, {"type": "image", "source": PNG_URL}],
        }
    ]

    with deck.client() as client:
        response = client.post(
            "/v1/prompt/invoke", json={"deployment": "describe", "inputs": {"history": said}}
        )
        bound = client.post(
            "/v1/prompt/invoke",
            json={
                "deployment": "describe",
                "inputs": {
                    "history": [{"role": "user", "content": [{"type": "image", "source": "{{ x }}"}]}]
                },
            },
        )

    assert response.status_code == 200, response.text
    assert upstream.requests[-1]["messages"][1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "And this?"},
            {"type": "image_url", "image_url": {"url": PNG_URL}},
        ],
    }
    assert run_of(deck, response.json()["request_id"])["inputs"]["history"][0]["content"][1] == {
        "type": "image",
        "source": PNG_DIGEST,
    }
    assert bound.status_code == 422 and "history (expected chat_history" in bound.text
    assert len(upstream.requests) == 1
