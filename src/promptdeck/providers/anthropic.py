"""Anthropic's Messages API: `POST {base}/v1/messages` with `x-api-key` and
`anthropic-version: 2023-06-01`; streams are named server-sent events (`message_start`,
`content_block_start|delta|stop`, `message_delta`, `message_stop`, `ping`, `error`).

How the neutral call is mapped, where Anthropic differs:

* System messages become the top-level `system` string (joined by a blank line, wherever they
  stand). The other turns alternate user/assistant: consecutive turns of one role are merged
  into one turn of content blocks; tool results are `tool_result` blocks of a user turn; an
  assistant's tool calls are `tool_use` blocks whose `input` is the parsed JSON arguments.
  Empty text blocks are left out, since Anthropic rejects them. Image and document parts become
  `image` and `document` blocks with a `url` or a `base64` source (`_block`).
* `max_tokens` is required: the version's, else 4096. `reasoning_effort` turns on extended
  thinking with `budget_tokens` from `REASONING_BUDGETS`; Anthropic counts thinking inside
  `max_tokens` and needs the budget below it, so a `max_tokens` not above the budget becomes
  budget + `max_tokens` (the answer keeps the room the version gave it).
* `stop` becomes `stop_sequences`; `seed` and the presence/frequency penalties have no
  Anthropic counterpart and are left out. `temperature` and `top_p` pass as they are: where
  Anthropic refuses a value (above 1, or any temperature with thinking) its 400 says why.
* tool_choice `auto` / `required` / `none` / `{name}` become `{"type": "auto" | "any" | "none" |
  "tool"}`.
* response_format `json_schema` becomes `output_config.format` (Anthropic's structured outputs,
  generally available, no beta header) — the answer stays text, and it works with thinking,
  which a forced tool would not; models without structured outputs answer 400.
  `json_object` has no Anthropic counterpart and is not sent: the prompt must ask for JSON.
* The base URL is the host, as in Anthropic's SDK (`https://api.anthropic.com`); one ending
  in `/v1` works too.

Answers: `Usage.input` is the whole prompt (`input_tokens` plus cache reads and writes, which
Anthropic counts apart), `cached_input` the cache reads, `cache_write_input` the cache writes,
`reasoning` the `output_tokens_details.thinking_tokens` when reported (they are part of
`output`). A stream's usage is `message_start`'s, updated by `message_delta`'s cumulative
counts, so it equals the non-streamed answer's. `Started` waits for the first content: an
`error` event right after `message_start` (how Anthropic reports being overloaded once a
stream is open) then fails retryably, since nothing reached the caller.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from promptdeck.domain.errors import CONTEXT_LENGTH_EXCEEDED, ValidationFailed
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
from promptdeck.domain.media_sources import parse_data_url
from promptdeck.providers.base import REASONING_BUDGETS, ProviderCall
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

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
STOP_REASONS = {
    "end_turn": STOP,
    "stop_sequence": STOP,
    "pause_turn": STOP,
    "max_tokens": LENGTH,
    "model_context_window_exceeded": LENGTH,
    "tool_use": TOOL_CALLS,
    "refusal": CONTENT_FILTER,
}
TOOL_CHOICES = {"auto": "auto", "required": "any", "none": "none"}
# Anthropic's error types (its errors page), as promptdeck's failure codes; the rest are `upstream_error`.
ERROR_CODES = {
    "invalid_request_error": "upstream_rejected",
    "request_too_large": "upstream_rejected",
    "billing_error": "upstream_rejected",
    "authentication_error": "upstream_auth_failed",
    "permission_error": "upstream_auth_failed",
    "not_found_error": "upstream_not_found",
    "rate_limit_error": "upstream_rate_limited",
    "timeout_error": "upstream_timeout",
}
RETRYABLE_ERRORS = ("rate_limit_error", "timeout_error", "api_error", "overloaded_error")


class AnthropicProvider(HttpUpstream):
    hints = {
        **STATUS_HINTS,
        404: "check the model name, and the base URL (Anthropic's host, like https://api.anthropic.com)",
        413: "the request is larger than Anthropic accepts",
        529: "Anthropic is overloaded; try again shortly",
    }

    name = "anthropic"
    free = False
    credential_name: str | None = "anthropic"
    pricing_name: str | None = "anthropic"
    media_family = "anthropic"
    fixed_headers: ClassVar[dict[str, str]] = {"anthropic-version": API_VERSION}

    @classmethod
    def from_settings(cls, settings: Settings) -> AnthropicProvider:
        return cls.configured(settings, settings.anthropic_base_url, settings.anthropic_api_key)

    def request(self, call: ProviderCall) -> UpstreamRequest:
        system, messages = _messages(call.messages)
        params = call.params
        body: dict[str, Any] = {
            "model": call.model,
            "max_tokens": params.get("max_tokens") or DEFAULT_MAX_TOKENS,
        }
        if system:
            body["system"] = system
        body["messages"] = messages
        body.update((k, params[k]) for k in ("temperature", "top_p") if params.get(k) is not None)
        if params.get("stop"):
            body["stop_sequences"] = [params["stop"]] if isinstance(params["stop"], str) else params["stop"]
        if params.get("reasoning_effort"):
            budget = REASONING_BUDGETS.get(params["reasoning_effort"])
            if budget is None:
                raise ValidationFailed(
                    f"reasoning_effort must be one of {', '.join(REASONING_BUDGETS)}; "
                    f"got {params['reasoning_effort']!r}"
                )
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
            if body["max_tokens"] <= budget:
                body["max_tokens"] += budget
        if call.tools:
            body["tools"] = [_tool(tool) for tool in call.tools]
        if call.tool_choice is not None:
            choice = call.tool_choice
            body["tool_choice"] = (
                {"type": TOOL_CHOICES.get(choice, choice)}
                if isinstance(choice, str)
                else {"type": "tool", "name": choice["name"]}
            )
        if call.response_format and call.response_format.get("type") == "json_schema":
            body["output_config"] = {
                "format": {"type": "json_schema", "schema": call.response_format["schema"]}
            }
        if call.stream:
            body["stream"] = True
        return UpstreamRequest(self.url(call), body)

    def url(self, call: ProviderCall) -> str:
        base = (call.base_url or self.base_url).rstrip("/")
        return base + ("/messages" if base.endswith("/v1") else "/v1/messages")

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """How a key is sent; no key, no header (a local proxy may need none)."""
        return {"x-api-key": api_key} if api_key else {}

    async def parse_stream(self, events: AsyncIterator[SseEvent]) -> AsyncGenerator[Event, None]:
        message = _Message()
        started = False  # whether anything reached the caller
        async for sse in events:
            data = self.json(sse.data)
            if data.get("type") == "error":
                raise UpstreamFailure(self.error_failure(data.get("error"), "failed mid-stream", started))
            try:
                deltas = message.read(data)
            except SHAPE_ERRORS:
                raise self.unreadable("an event", sse.data) from None
            if deltas and not started:
                started = True
                yield Started(f"{self.name}/{message.model or 'unknown'}")
            for delta in deltas:
                yield delta
            if message.stopped:
                break
        if not message.stopped:
            problem = "closed the stream before it finished"
            if message.model is None:
                problem = "closed the stream before the message began"
            raise UpstreamFailure(self.failed("upstream_stream_cut", problem, retryable=not started))
        if message.model is None:
            raise UpstreamFailure(self.failed("upstream_bad_response", "streamed no message_start"))
        if not started:
            yield Started(f"{self.name}/{message.model}")
        yield _usage(message.usage)
        yield Finished(STOP_REASONS.get(message.stop_reason or "end_turn", STOP))

    def parse_body(self, body: dict[str, Any]) -> list[Event]:
        if body.get("type") == "error" or (body.get("error") and "content" not in body):
            raise UpstreamFailure(self.error_failure(body.get("error"), "answered with an error", False))
        content = body.get("content")
        if not isinstance(content, list):
            raise UpstreamFailure(self.failed("upstream_bad_response", "answered without content"))
        events: list[Event] = [Started(f"{self.name}/{body.get('model') or 'unknown'}")]
        tools = 0
        for block in content:
            kind = block.get("type")
            if kind == "text" and block.get("text"):
                events.append(TextDelta(str(block["text"])))
            elif kind == "thinking" and block.get("thinking"):
                events.append(ReasoningDelta(str(block["thinking"])))
            elif kind == "tool_use":
                arguments = orjson.dumps(block.get("input") or {}).decode()
                events.append(ToolCallDelta(tools, str(block["id"]), str(block["name"]), arguments))
                tools += 1
        events.append(_usage(body.get("usage") or {}))
        events.append(Finished(STOP_REASONS.get(body.get("stop_reason") or "end_turn", STOP)))
        return events

    # ── failures ────────────────────────────────────────────────────────────

    def status_failure(self, url: str, status: int, body: bytes) -> Failed:
        """Anthropic names the cause in `error.type` (`overloaded_error`…), where the shared
        reader looks for a `code`: handed over under that name, it joins the message."""
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if _error_type(error):
            body = orjson.dumps({"error": _named(error)})
        failed = super().status_failure(url, status, body)
        return replace(failed, code=CONTEXT_LENGTH_EXCEEDED) if _overflows(error) else failed

    def error_failure(self, error: Any, problem: str, started: bool) -> Failed:
        """An error object inside a 200 answer: retryable when Anthropic says the trouble is
        passing (overloaded, rate limited) and nothing reached the caller."""
        kind = _error_type(error)
        return self.failed(
            CONTEXT_LENGTH_EXCEEDED if _overflows(error) else ERROR_CODES.get(kind, "upstream_error"),
            f"{problem}: {error_message(_named(error))}",
            retryable=not started and kind in RETRYABLE_ERRORS,
        )


# How Anthropic words a prompt over the model's context (an `invalid_request_error`): "prompt is
# too long: 210000 tokens > 200000 maximum", or, counting max_tokens, "input length and
# `max_tokens` exceed context limit: …".
OVERFLOW_WORDS = ("prompt is too long", "exceed context limit")


def _overflows(error: Any) -> bool:
    message = str(error.get("message") or "").lower() if isinstance(error, dict) else ""
    return _error_type(error) == "invalid_request_error" and any(w in message for w in OVERFLOW_WORDS)


def _error_type(error: Any) -> str:
    return str(error.get("type") or "") if isinstance(error, dict) else ""


def _named(error: Any) -> Any:
    """Anthropic's `{"type", "message"}` error with its type as the `code` the shared reader shows."""
    if not isinstance(error, dict) or not error.get("message") or error.get("code"):
        return error
    return {"message": error["message"], "code": _error_type(error) or None}


@dataclass
class _ToolBlock:
    position: int  # among the answer's tool calls, which is the `ToolCallDelta.index`
    arguments: bool = False  # whether any argument text went out


class _Message:
    """One streamed message as its events arrive: each event's deltas, and what the end needs."""

    def __init__(self) -> None:
        self.model: str | None = None
        self.usage: dict[str, Any] = {}
        self.tools: dict[int, _ToolBlock] = {}  # by content block index
        self.stop_reason: str | None = None
        self.stopped = False

    def read(self, event: dict[str, Any]) -> list[Event]:
        kind = event.get("type")
        if kind == "message_start":
            message = event["message"]
            self.model = str(message.get("model") or "")
            self.usage = dict(message.get("usage") or {})
        elif kind == "content_block_start":
            return self._start(int(event["index"]), event["content_block"])
        elif kind == "content_block_delta":
            return self._delta(int(event["index"]), event["delta"])
        elif kind == "content_block_stop":
            tool = self.tools.get(int(event["index"]))
            if tool is not None and not tool.arguments:  # a call without arguments: as `{}` when whole
                tool.arguments = True
                return [ToolCallDelta(tool.position, None, None, "{}")]
        elif kind == "message_delta":
            self.stop_reason = event["delta"].get("stop_reason") or self.stop_reason
            self.usage.update((k, v) for k, v in (event.get("usage") or {}).items() if v is not None)
        elif kind == "message_stop":
            self.stopped = True
        return []  # `ping`, and event types added after this was written

    def _start(self, index: int, block: dict[str, Any]) -> list[Event]:
        kind = block.get("type")
        if kind == "tool_use":
            tool = self.tools[index] = _ToolBlock(len(self.tools))
            arguments = orjson.dumps(block["input"]).decode() if block.get("input") else ""
            tool.arguments = bool(arguments)
            return [ToolCallDelta(tool.position, str(block["id"]), str(block["name"]), arguments)]
        if kind == "text" and block.get("text"):
            return [TextDelta(str(block["text"]))]
        if kind == "thinking" and block.get("thinking"):
            return [ReasoningDelta(str(block["thinking"]))]
        return []

    def _delta(self, index: int, delta: dict[str, Any]) -> list[Event]:
        kind = delta.get("type")
        if kind == "text_delta" and delta["text"]:
            return [TextDelta(str(delta["text"]))]
        if kind == "thinking_delta" and delta["thinking"]:
            return [ReasoningDelta(str(delta["thinking"]))]
        if kind == "input_json_delta" and delta["partial_json"]:
            tool = self.tools[index]
            tool.arguments = True
            return [ToolCallDelta(tool.position, None, None, str(delta["partial_json"]))]
        return []  # signature_delta, citations_delta


# ── request pieces ──────────────────────────────────────────────────────────


def _messages(neutral: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The system text, and the turns in Anthropic's shape (alternating, one turn per role run)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in neutral:
        role = message.get("role")
        content = message.get("content")
        text = str(content or "") if not isinstance(content, list) else ""
        if role == "system":
            texts = (
                [p["text"] for p in content if p["type"] == "text"] if isinstance(content, list) else [text]
            )
            system += [t for t in texts if t]
            continue
        blocks: list[dict[str, Any]] = []
        if role == "tool":
            role = "user"
            blocks.append(
                {"type": "tool_result", "tool_use_id": message.get("tool_call_id"), "content": text}
            )
        elif isinstance(content, list):
            blocks += [_block(part) for part in content if part["type"] != "text" or part["text"]]
        elif text:
            blocks.append({"type": "text", "text": text})
        if role == "assistant":
            blocks += [_tool_use(call) for call in message.get("tool_calls") or []]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:  # a lone text block is sent as plain text, as in Anthropic's examples
        if len(turn["content"]) == 1 and turn["content"][0]["type"] == "text":
            turn["content"] = turn["content"][0]["text"]
    return "\n\n".join(system), turns


def _block(part: dict[str, Any]) -> dict[str, Any]:
    """A content part as an Anthropic content block: `text`, or an `image` or `document` block
    whose source is `{type: url, url}` or, for a data: URL, `{type: base64, media_type, data}`;
    a named document carries its name as the block's `title`."""
    if part["type"] == "text":
        return {"type": "text", "text": part["text"]}
    data = parse_data_url(part["source"])
    source: dict[str, Any] = (
        {"type": "url", "url": part["source"]}
        if data is None
        else {"type": "base64", "media_type": data.media_type, "data": data.payload}
    )
    block: dict[str, Any] = {"type": part["type"], "source": source}
    if part["type"] == "document" and part.get("name"):
        block["title"] = part["name"]
    return block


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    arguments = call.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ValidationFailed(
            f"tool call {call.get('name')!r} has arguments that are not a JSON object, which Anthropic "
            f"requires: {str(arguments)[:200]}"
        )
    return {"type": "tool_use", "id": call["id"], "name": call["name"], "input": parsed}


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        out["description"] = tool["description"]
    out["input_schema"] = tool.get("parameters") or {"type": "object", "properties": {}}
    return out


def _usage(raw: dict[str, Any]) -> Usage:
    """Anthropic's usage (always reported; zero if a proxy left it out). `input_tokens` counts
    only what came after the last cache breakpoint, so the prompt is all three together."""
    read = int(raw.get("cache_read_input_tokens") or 0)
    written = int(raw.get("cache_creation_input_tokens") or 0)
    details = raw.get("output_tokens_details") or {}
    return Usage(
        input=int(raw.get("input_tokens") or 0) + read + written,
        cached_input=read,
        cache_write_input=written,
        output=int(raw.get("output_tokens") or 0),
        reasoning=int(details.get("thinking_tokens") or 0),
    )
