"""The real clients sending images and documents (issue 18) to a live promptdeck on loopback,
over the fake OpenAI upstream: `vellum-ai` with IMAGE and DOCUMENT inputs and CHAT_HISTORY
messages with IMAGE and ARRAY content, and `openai` with `image_url` and `file` parts (streamed
and not) through `/v1/chat/completions` with a deployment as the model. Checks what the
upstream received (OpenAI's wire shape), what each client parses, and the refusals each raises."""

from __future__ import annotations

import uuid
from typing import Any

import openai
import pytest
from openai import OpenAI
from vellum import (
    ArrayChatMessageContentRequest,
    AudioInputRequest,
    ChatHistoryInputRequest,
    ChatMessageRequest,
    DocumentInputRequest,
    FulfilledExecutePromptResponse,
    ImageChatMessageContentRequest,
    ImageInputRequest,
    StringChatMessageContentRequest,
    StringInputRequest,
    Vellum,
    VellumAudioRequest,
    VellumDocumentRequest,
    VellumEnvironment,
    VellumImageRequest,
)
from vellum.client.errors import BadRequestError

from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, StartDeck, run_of
from tests.test_multimodal_dialects import PDF_DIGEST, PDF_URL, PNG_DIGEST, plain, with_document
from tests.test_multimodal_invoke import PHOTO, PNG_URL, deploy

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck


def vellum(deck: Deck) -> Vellum:
    env = VellumEnvironment(default=deck.url, predict=deck.url, documents=deck.url)
    return Vellum(api_key=deck.admin_key, environment=env, timeout=60)


def chat(deck: Deck) -> OpenAI:
    return OpenAI(base_url=deck.url + "/v1", api_key=deck.admin_key, max_retries=0)


# ── vellum-ai ───────────────────────────────────────────────────────────────


def test_vellum_client_sends_image_and_document_inputs(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    deck = start_deck()
    deploy(deck, "describe", with_document())

    result = vellum(deck).execute_prompt(
        prompt_deployment_name="describe",
        inputs=[
            ImageInputRequest(name="photo", value=VellumImageRequest(src=PHOTO)),
            DocumentInputRequest(name="report", value=VellumDocumentRequest(src=PDF_URL)),
            StringInputRequest(name="audience", value="kids"),
        ],
    )

    assert isinstance(result, FulfilledExecutePromptResponse)
    assert [(o.type, o.value) for o in result.outputs] == [("STRING", "Hello, world!")]
    assert upstream.requests[-1]["messages"][1]["content"] == [
        {"type": "text", "text": "Describe this for kids."},
        {"type": "image_url", "image_url": {"url": PHOTO, "detail": "low"}},
        {"type": "file", "file": {"filename": "r.pdf", "file_data": PDF_URL}},
    ]
    run = run_of(deck, uuid.UUID(result.execution_id).hex)
    assert run["dialect"] == "vellum" and run["inputs"]["report"] == PDF_DIGEST


def test_vellum_client_sends_chat_history_with_image_and_array_content(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    deck = start_deck()
    deploy(deck, "describe", plain())
    said = [
        ChatMessageRequest(
            role="USER", content=ImageChatMessageContentRequest(value=VellumImageRequest(src=PHOTO))
        ),
        ChatMessageRequest(role="ASSISTANT", content=StringChatMessageContentRequest(value="A cat.")),
        ChatMessageRequest(
            role="USER",
            content=ArrayChatMessageContentRequest(
                value=[
                    StringChatMessageContentRequest(value="And this one?"),
                    ImageChatMessageContentRequest(
                        value=VellumImageRequest(src=PNG_URL, metadata={"detail": "high"})
                    ),
                ]
            ),
        ),
    ]

    seen = list(
        vellum(deck).execute_prompt_stream(
            prompt_deployment_name="describe", inputs=[ChatHistoryInputRequest(name="history", value=said)]
        )
    )

    assert seen[0].state == "INITIATED" and seen[-1].state == "FULFILLED"
    assert "".join(e.output.value for e in seen if e.state == "STREAMING") == "Hello, world!"
    assert upstream.requests[-1]["messages"][1:] == [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PHOTO}}]},
        {"role": "assistant", "content": "A cat."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And this one?"},
                {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "high"}},
            ],
        },
    ]
    run = run_of(deck, uuid.UUID(seen[-1].execution_id).hex)
    assert run["messages"][3]["content"][1] == {"type": "image", "source": PNG_DIGEST, "detail": "high"}


def test_vellum_client_gets_a_400_naming_an_audio_input(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    deck = start_deck()
    deploy(deck, "describe", plain())

    with pytest.raises(BadRequestError) as refused:
        vellum(deck).execute_prompt(
            prompt_deployment_name="describe",
            inputs=[AudioInputRequest(name="clip", value=VellumAudioRequest(src="https://a.example/b.mp3"))],
        )

    assert "(input 'clip'): AUDIO inputs are not supported" in refused.value.body["detail"]
    assert upstream.requests == []


# ── openai ──────────────────────────────────────────────────────────────────

PARTS: Any = [
    {"type": "text", "text": "What do these show?"},
    {"type": "image_url", "image_url": {"url": PHOTO, "detail": "high"}},
    {"type": "file", "file": {"file_data": PDF_URL, "filename": "q3.pdf"}},
]
SENT = [
    {"type": "text", "text": "What do these show?"},
    {"type": "image_url", "image_url": {"url": PHOTO, "detail": "high"}},
    {"type": "file", "file": {"filename": "q3.pdf", "file_data": PDF_URL}},
]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_client_sends_image_url_and_file_parts(
    upstream: FakeOpenAI, start_deck: StartDeck, stream: bool
) -> None:
    deck = start_deck()
    deploy(deck, "describe", plain())
    messages: Any = [{"role": "user", "content": PARTS}]

    if stream:
        chunks = list(chat(deck).chat.completions.create(model="describe", messages=messages, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        request_id = "req_" + chunks[0].id.removeprefix("chatcmpl-")
    else:
        completion = chat(deck).chat.completions.create(model="describe", messages=messages)
        text = completion.choices[0].message.content or ""
        request_id = "req_" + completion.id.removeprefix("chatcmpl-")

    assert text == "Hello, world!"
    assert upstream.requests[-1]["messages"][1] == {"role": "user", "content": SENT}
    run = run_of(deck, request_id)
    assert run["messages"][1]["content"][2] == {"type": "document", "source": PDF_DIGEST, "name": "q3.pdf"}


def test_openai_client_gets_a_400_for_a_file_id(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    deck = start_deck()
    deploy(deck, "describe", plain())
    messages: Any = [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc123"}}]}]

    with pytest.raises(openai.BadRequestError) as refused:
        chat(deck).chat.completions.create(model="describe", messages=messages)

    error: dict[str, Any] = refused.value.body  # type: ignore[assignment]
    assert error["param"] == "messages[0].content[0].file.file_id"
    assert "promptdeck keeps no uploaded files" in error["message"]
    assert upstream.requests == []
