"""Any OpenAI-compatible chat-completions upstream: OpenAI itself, Ollama, vLLM,
llama.cpp's server, Groq, Together…

Streams with `stream_options.include_usage` so token counts arrive at the end
of the stream; non-streaming calls are answered in one request.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from promptdeck.domain.errors import CONTEXT_LENGTH_EXCEEDED
from promptdeck.domain.events import (
    CONTENT_FILTER,
    LENGTH,
    STOP,
    TOOL_CALLS,
    Event,
    Failed,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from promptdeck.domain.media_sources import file_name
from promptdeck.providers.base import ProviderCall
from promptdeck.providers.http_upstream import (
    SHAPE_ERRORS,
    STATUS_HINTS,
    HttpUpstream,
    SseEvent,
    UpstreamFailure,
    UpstreamRequest,
    error_message,
)

if TYPE_CHECKING:
    from promptdeck.config import Settings

FINISH_REASONS = {
    "stop": STOP,
    "length": LENGTH,
    "tool_calls": TOOL_CALLS,
    "function_call": TOOL_CALLS,
    "content_filter": CONTENT_FILTER,
}
PASSED_PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "reasoning_effort",
)


class OpenAIProvider(HttpUpstream):
    hints = {**STATUS_HINTS, 404: "check the model name, and the base URL (it usually ends in /v1)"}

    name = "openai"
    free = False
    credential_name: str | None = "openai"
    pricing_name: str | None = "openai"
    media_family = "openai-chat"

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIProvider:
        return cls.configured(settings, settings.openai_base_url, settings.openai_api_key)

    def request(self, call: ProviderCall) -> UpstreamRequest:
        body: dict[str, Any] = {"model": call.model, "messages": [_message(m) for m in call.messages]}
        body.update((k, call.params[k]) for k in PASSED_PARAMS if k in call.params)
        if call.tools:
            body["tools"] = [{"type": "function", "function": tool} for tool in call.tools]
        if call.tool_choice is not None:
            choice = call.tool_choice
            body["tool_choice"] = (
                choice
                if isinstance(choice, str)
                else {"type": "function", "function": {"name": choice["name"]}}
            )
        if call.response_format is not None:
            body["response_format"] = _response_format(call.response_format)
        if call.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return UpstreamRequest(self.url(call), body)

    def url(self, call: ProviderCall) -> str:
        return (call.base_url or self.base_url).rstrip("/") + "/chat/completions"

    async def parse_stream(self, events: AsyncIterator[SseEvent]) -> AsyncGenerator[Event, None]:
        started = done = answered = False
        stop_reason: str | None = None
        usage: Usage | None = None
        async for sse in events:
            if sse.data == "[DONE]":
                done = True
                break
            chunk = self.json(sse.data)
            if chunk.get("error"):
                code = CONTEXT_LENGTH_EXCEEDED if overflows(chunk["error"]) else "upstream_error"
                raise UpstreamFailure(
                    self.failed(code, f"failed mid-stream: {error_message(chunk['error'])}")
                )
            if not started:
                if not (chunk.get("model") or chunk.get("choices") or chunk.get("usage")):
                    continue  # nothing to tell yet, e.g. Azure's leading `prompt_filter_results` chunk
                started = True
                yield Started(f"{self.name}/{chunk.get('model') or 'unknown'}")
            try:
                deltas: list[Event] = []
                for choice in chunk.get("choices") or []:
                    answered = True
                    deltas += _message_events(choice.get("delta") or {})
                    if choice.get("finish_reason"):
                        stop_reason = FINISH_REASONS.get(choice["finish_reason"], STOP)
                if chunk.get("usage"):
                    usage = _usage(chunk["usage"])
            except SHAPE_ERRORS:
                raise self.unreadable("a chunk", sse.data) from None
            for delta in deltas:
                yield delta
        if stop_reason is None and not done:
            problem = "closed the stream before it finished"
            if not started:  # e.g. llama.cpp's Python server when the prompt overflows its context
                problem = "closed the stream without sending a single event; its own log may say why"
            raise UpstreamFailure(self.failed("upstream_stream_cut", problem, retryable=not started))
        if not answered:
            raise UpstreamFailure(self.failed("upstream_bad_response", "streamed no choices"))
        if usage is not None:
            yield usage
        yield Finished(stop_reason or STOP)

    def parse_body(self, body: dict[str, Any]) -> list[Event]:
        choices = body.get("choices")
        if body.get("error") and not choices:
            code = CONTEXT_LENGTH_EXCEEDED if overflows(body["error"]) else "upstream_error"
            raise UpstreamFailure(
                self.failed(code, f"answered with an error: {error_message(body['error'])}")
            )
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise UpstreamFailure(self.failed("upstream_bad_response", "answered without choices"))
        events: list[Event] = [Started(f"{self.name}/{body.get('model') or 'unknown'}")]
        events += _message_events(choices[0].get("message") or {})
        if body.get("usage"):
            events.append(_usage(body["usage"]))
        events.append(Finished(FINISH_REASONS.get(choices[0].get("finish_reason") or "stop", STOP)))
        return events

    def status_failure(self, url: str, status: int, body: bytes) -> Failed:
        """A prompt over the model's context is the caller's to shorten, whichever
        OpenAI-compatible server says so (see `overflows`)."""
        failed = super().status_failure(url, status, body)
        return replace(failed, code=CONTEXT_LENGTH_EXCEEDED) if _overflow_body(body) else failed


# How OpenAI-compatible servers name a prompt over the context: OpenAI (and Azure, vLLM's
# OpenAI server, llama-cpp-python's) by the error `code`, llama.cpp's own server by `type`.
OVERFLOW_NAMES = (CONTEXT_LENGTH_EXCEEDED, "exceed_context_size_error")


def overflows(error: Any) -> bool:
    """Whether an OpenAI-style error object says the prompt does not fit the model's context."""
    if not isinstance(error, dict):
        return False
    return error.get("code") in OVERFLOW_NAMES or error.get("type") in OVERFLOW_NAMES


def _overflow_body(body: bytes) -> bool:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and overflows(parsed.get("error"))


def _message(message: dict[str, Any]) -> dict[str, Any]:
    """A neutral message in OpenAI's shape (parts and tool calls have their own; the rest is the same)."""
    if isinstance(message.get("content"), list):
        message = {**message, "content": [_part(part) for part in message["content"]]}
    if not message.get("tool_calls"):
        return message
    calls = [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in message["tool_calls"]
    ]
    return {**message, "tool_calls": calls}


def _part(part: dict[str, Any]) -> dict[str, Any]:
    """A content part as a Chat Completions content part: `text`, `image_url` (with its
    `detail`), or a PDF as a `file` whose `file_data` is the data: URL (the only way it takes
    bytes; a URL was refused before the call, domain/media_capability.py)."""
    kind = part["type"]
    if kind == "text":
        return {"type": "text", "text": part["text"]}
    if kind == "image":
        image = {"url": part["source"]}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    return {"type": "file", "file": {"filename": file_name(part), "file_data": part["source"]}}


def _response_format(neutral: dict[str, Any]) -> dict[str, Any]:
    if neutral.get("type") != "json_schema":
        return neutral
    schema = {"name": neutral.get("name") or "response", "schema": neutral["schema"]}
    if "strict" in neutral:
        schema["strict"] = neutral["strict"]
    return {"type": "json_schema", "json_schema": schema}


def _message_events(message: dict[str, Any]) -> list[Event]:
    """Reasoning, text and tool calls of one message, whole or a stream delta: both share a shape.
    DeepSeek and older vLLM name the reasoning `reasoning_content`, newer vLLM `reasoning`."""
    events: list[Event] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if reasoning:
        events.append(ReasoningDelta(str(reasoning)))
    if message.get("content"):
        events.append(TextDelta(str(message["content"])))
    for position, tool in enumerate(message.get("tool_calls") or []):
        function = tool.get("function") or {}
        events.append(
            ToolCallDelta(
                int(tool.get("index", position)),
                tool.get("id"),
                function.get("name"),
                function.get("arguments") or "",
            )
        )
    return events


def _usage(raw: dict[str, Any]) -> Usage:
    """OpenAI's usage object; DeepSeek reports its cache hits as `prompt_cache_hit_tokens`."""
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        input=int(raw.get("prompt_tokens") or 0),
        cached_input=int(prompt_details.get("cached_tokens") or raw.get("prompt_cache_hit_tokens") or 0),
        output=int(raw.get("completion_tokens") or 0),
        reasoning=int(completion_details.get("reasoning_tokens") or 0),
    )
