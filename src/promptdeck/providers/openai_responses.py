"""OpenAI's Responses API (`openai-responses/<model>`), the one its reasoning models answer
best through, and the only one that returns their reasoning summaries.

The format followed is OpenAI's API reference for `POST {base}/responses` (the `Response`
object and its typed streaming events) and its function-calling and structured-outputs
guides. The neutral call maps to it like this:

* messages → `input` items: a leading system message becomes `instructions`, later ones stay
  `system` items; an assistant's tool calls become `function_call` items and tool results
  `function_call_output` items. Content parts become `input_text`, `input_image` and
  `input_file` items (`_content_part`).
* params: `temperature`, `top_p`, `max_tokens` → `max_output_tokens`, `reasoning_effort` →
  `reasoning: {effort, summary: "auto"}`. The API has no `stop`, `seed`,
  `presence_penalty` or `frequency_penalty`; they stay behind, like any unknown parameter.
* tools → `{type: function, name, description, parameters, strict}` with `strict: false`
  unless a tool says otherwise: left out, the Responses API would rewrite each schema into
  strict mode (every field required), unlike Chat Completions.
* response_format → `text.format`; tool_choice `{"name"}` → `{type: function, name}`.
* `store: false`: promptdeck logs runs itself and never continues a stored response.

Answers: `reasoning` items' summaries become `ReasoningDelta`s (parts separated by a blank
line), `message` items' `output_text` (and a `refusal`, so a caller sees why nothing else
came) `TextDelta`s, `function_call` items `ToolCallDelta`s indexed by their position among
the function calls. `status: incomplete` maps `incomplete_details.reason` to `length` or
`content_filter`; a completed answer with function calls stops with `tool_calls`.

A stream is typed events, each named in its `type`; it must end with `response.completed`,
`response.incomplete` or `response.failed` (no `[DONE]`), else it counts as cut. Whole
items (`response.output_item.done`) and deltas go through one `_Told` record, so a streamed
answer and a whole one yield the same events.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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

INCOMPLETE_REASONS = {"max_output_tokens": LENGTH, "content_filter": CONTENT_FILTER}
ERROR_CODES = {"rate_limit_exceeded": "upstream_rate_limited", "vector_store_timeout": "upstream_timeout"}
RETRYABLE_CODES = ("upstream_rate_limited", "upstream_timeout", "upstream_error")
ENDINGS = ("response.completed", "response.incomplete")
SUMMARY_SEPARATOR = "\n\n"


class OpenAIResponsesProvider(HttpUpstream):
    hints = {**STATUS_HINTS, 404: "check the model name, and the base URL (it usually ends in /v1)"}

    name = "openai-responses"
    free = False
    credential_name: str | None = "openai"  # one OpenAI key serves both of its APIs
    pricing_name: str | None = "openai"
    media_family = "openai-responses"

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIResponsesProvider:
        return cls.configured(settings, settings.openai_base_url, settings.openai_api_key)

    # ── the request ─────────────────────────────────────────────────────────

    def request(self, call: ProviderCall) -> UpstreamRequest:
        body: dict[str, Any] = {"model": call.model}
        messages = call.messages
        if (
            messages
            and messages[0].get("role") == "system"
            and not isinstance(messages[0].get("content"), list)
        ):
            body["instructions"] = messages[0].get("content") or ""
            messages = messages[1:]
        body["input"] = [item for message in messages for item in _input_items(message)]
        params = call.params
        body.update((k, params[k]) for k in ("temperature", "top_p") if k in params)
        if "max_tokens" in params:
            body["max_output_tokens"] = params["max_tokens"]
        if params.get("reasoning_effort"):
            body["reasoning"] = {"effort": params["reasoning_effort"], "summary": "auto"}
        if call.tools:
            body["tools"] = [_tool(tool) for tool in call.tools]
        if call.tool_choice is not None:
            choice = call.tool_choice
            body["tool_choice"] = (
                choice if isinstance(choice, str) else {"type": "function", "name": choice["name"]}
            )
        if call.response_format is not None:
            body["text"] = {"format": _text_format(call.response_format)}
        body["store"] = False
        if call.stream:
            body["stream"] = True
        url = (call.base_url or self.base_url).rstrip("/") + "/responses"
        return UpstreamRequest(url, body)

    # ── a whole answer ──────────────────────────────────────────────────────

    def parse_body(self, body: dict[str, Any]) -> list[Event]:
        output = body.get("output")
        if body.get("status") == "failed" or (body.get("error") and not output):
            raise UpstreamFailure(self._failed(body.get("error"), "answered with an error", started=False))
        if not isinstance(output, list):
            raise UpstreamFailure(self.failed("upstream_bad_response", "answered without an output list"))
        told = _Told()
        events: list[Event] = [Started(f"{self.name}/{body.get('model') or 'unknown'}")]
        for position, item in enumerate(output):
            events += told.item(position, item)
        if body.get("usage"):
            events.append(_usage(body["usage"]))
        events.append(Finished(_stop_reason(body, called=bool(told.calls))))
        return events

    # ── a stream ────────────────────────────────────────────────────────────

    async def parse_stream(self, events: AsyncIterator[SseEvent]) -> AsyncGenerator[Event, None]:
        started = False
        told = _Told()
        async for sse in events:
            if sse.data == "[DONE]":  # not OpenAI's; from a compatible server, an end without an ending
                break
            data = self.json(sse.data)
            kind = data.get("type") or sse.event
            if kind == "error":
                error = data["error"] if isinstance(data.get("error"), dict) else data
                raise UpstreamFailure(self._failed(error, "failed mid-stream", started))
            if kind == "response.failed":
                response = data.get("response") or {}
                error = response.get("error") if isinstance(response, dict) else None
                raise UpstreamFailure(self._failed(error, "failed mid-stream", started))
            if not started:
                started = True
                response = data.get("response")
                model = response.get("model") if isinstance(response, dict) else None
                yield Started(f"{self.name}/{model or 'unknown'}")
            try:
                ended, deltas = self._event(kind, data, told)
            except SHAPE_ERRORS:
                raise self.unreadable("an event", sse.data) from None
            for delta in deltas:
                yield delta
            if ended:
                return
        problem = "closed the stream before it finished"
        if not started:
            problem = "closed the stream without sending a single event"
        raise UpstreamFailure(self.failed("upstream_stream_cut", problem, retryable=not started))

    def _event(self, kind: str | None, data: dict[str, Any], told: _Told) -> tuple[bool, list[Event]]:
        """The events one streamed event adds, and whether it ended the answer."""
        if kind in ENDINGS:
            response = data["response"]
            ending: list[Event] = [_usage(response["usage"])] if response.get("usage") else []
            return True, [*ending, Finished(_stop_reason(response, called=bool(told.calls)))]
        if kind in ("response.output_text.delta", "response.refusal.delta"):
            told.streamed.add(data["output_index"])
            return False, [TextDelta(data["delta"])] if data["delta"] else []
        if kind == "response.reasoning_summary_text.delta":
            told.streamed.add(data["output_index"])
            return False, told.reasoning(data["output_index"], data.get("summary_index") or 0, data["delta"])
        if kind == "response.function_call_arguments.delta":
            return False, told.arguments(data["output_index"], data["delta"])
        if kind in ("response.output_item.added", "response.output_item.done"):
            item = data["item"]
            if kind == "response.output_item.added" and item.get("type") != "function_call":
                return False, []
            return False, told.item(data["output_index"], item)
        return False, []  # lifecycle and bookkeeping events: created, in_progress, *.done parts…

    def _failed(self, error: Any, when: str, started: bool) -> Failed:
        """A `response.failed` / `error` event, or a failed answer: `{code, message}`."""
        code = error.get("code") if isinstance(error, dict) else None
        failure = ERROR_CODES.get(str(code), "upstream_error")
        detail = error_message(error) if error else "no error details"
        return self.failed(failure, f"{when}: {detail}", retryable=not started and failure in RETRYABLE_CODES)


@dataclass
class _Call:
    index: int
    arguments: str = ""


@dataclass
class _Told:
    """What a caller has been told of a response's output so far, keyed by `output_index`."""

    calls: dict[int, _Call] = field(default_factory=dict)
    streamed: set[int] = field(default_factory=set)  # items whose text or reasoning came as deltas
    part: tuple[int, int] | None = None  # the reasoning summary part told last
    reasoned: bool = False

    def item(self, position: int, item: dict[str, Any]) -> list[Event]:
        """Whatever a whole output item holds that was not told yet."""
        kind = item.get("type")
        if kind == "function_call":
            return self.call(position, item.get("call_id"), item.get("name"), item.get("arguments") or "")
        if position in self.streamed:
            return []
        if kind == "reasoning":
            events: list[Event] = []
            for number, part in enumerate(item.get("summary") or []):
                if part.get("type") == "summary_text":
                    events += self.reasoning(position, number, part.get("text") or "")
            return events
        if kind == "message":
            texts = (part.get("text") or part.get("refusal") for part in item.get("content") or [])
            return [TextDelta(str(text)) for text in texts if text]
        return []  # built-in tools' items (web search…) have nothing to tell

    def reasoning(self, position: int, part: int, text: str) -> list[Event]:
        if not text:
            return []
        new_part = self.reasoned and (position, part) != self.part
        self.part, self.reasoned = (position, part), True
        return [ReasoningDelta(SUMMARY_SEPARATOR + text if new_part else text)]

    def call(self, position: int, call_id: str | None, name: str | None, arguments: str) -> list[Event]:
        """A function call as a whole: announced with its id and name the first time, then
        only the part of its arguments not streamed yet."""
        known = self.calls.get(position)
        if known is None:
            self.calls[position] = _Call(len(self.calls), arguments)
            return [ToolCallDelta(len(self.calls) - 1, call_id, name, arguments)]
        if len(arguments) > len(known.arguments) and arguments.startswith(known.arguments):
            rest, known.arguments = arguments[len(known.arguments) :], arguments
            return [ToolCallDelta(known.index, None, None, rest)]
        return []

    def arguments(self, position: int, delta: str) -> list[Event]:
        known = self.calls[position]
        known.arguments += delta
        return [ToolCallDelta(known.index, None, None, delta)] if delta else []


def _input_items(message: dict[str, Any]) -> list[dict[str, Any]]:
    """One neutral message as Responses input items."""
    if message.get("role") == "tool":
        return [
            {
                "type": "function_call_output",
                "call_id": message["tool_call_id"],
                "output": message.get("content") or "",
            }
        ]
    calls = message.get("tool_calls") or []
    items: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, list):
        items.append(
            {"role": message["role"], "content": [_content_part(p, message["role"]) for p in content]}
        )
    elif content or not calls:
        items.append({"role": message["role"], "content": content or ""})
    items += [
        {"type": "function_call", "call_id": c["id"], "name": c["name"], "arguments": c["arguments"]}
        for c in calls
    ]
    return items


def _content_part(part: dict[str, Any], role: str) -> dict[str, Any]:
    """A content part as a Responses content item: `input_text` (`output_text` in an assistant
    turn), `input_image` with `image_url` (a URL or a data: URL) and its `detail` (which the API
    requires: `auto` unless the part says), `input_file` with `file_url` or, for a data: URL,
    `file_data` and a `filename`."""
    kind = part["type"]
    if kind == "text":
        return {"type": "output_text" if role == "assistant" else "input_text", "text": part["text"]}
    if kind == "image":
        return {"type": "input_image", "image_url": part["source"], "detail": part.get("detail") or "auto"}
    if part["source"].startswith("data:"):
        return {"type": "input_file", "filename": file_name(part), "file_data": part["source"]}
    return {"type": "input_file", "file_url": part["source"]}


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "function", "name": tool["name"]}
    if tool.get("description"):
        out["description"] = tool["description"]
    out["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
    out["strict"] = bool(tool.get("strict", False))
    return out


def _text_format(neutral: dict[str, Any]) -> dict[str, Any]:
    if neutral.get("type") != "json_schema":
        return {"type": neutral.get("type") or "text"}
    out = {"type": "json_schema", "name": neutral.get("name") or "response", "schema": neutral["schema"]}
    if "strict" in neutral:
        out["strict"] = neutral["strict"]
    return out


def _stop_reason(response: dict[str, Any], called: bool) -> str:
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return INCOMPLETE_REASONS.get(str(reason), LENGTH)
    return TOOL_CALLS if called else STOP


def _usage(raw: dict[str, Any]) -> Usage:
    return Usage(
        input=int(raw.get("input_tokens") or 0),
        cached_input=int((raw.get("input_tokens_details") or {}).get("cached_tokens") or 0),
        output=int(raw.get("output_tokens") or 0),
        reasoning=int((raw.get("output_tokens_details") or {}).get("reasoning_tokens") or 0),
    )
