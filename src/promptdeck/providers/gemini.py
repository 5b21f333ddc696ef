"""Google's Gemini API: `models/{model}:generateContent`, and `:streamGenerateContent?alt=sse`
for streams (each `data:` line one whole `GenerateContentResponse`).

Gemini names things its own way: the assistant is the `model` role, system messages become
one `systemInstruction`, tool results are `functionResponse` parts of a user turn, and
reasoning arrives as parts marked `thought: true` (asked for with `thinkingConfig`). A
function call arrives whole, never in pieces. Usage in a stream is cumulative: the last
report counts.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

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
from promptdeck.domain.media_sources import media_type_of, parse_data_url
from promptdeck.providers.base import REASONING_BUDGETS, ProviderCall
from promptdeck.providers.http_upstream import (
    RETRYABLE_STATUSES,
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

API_VERSION = "v1beta"
FINISH_REASONS = {
    "STOP": STOP,
    "MAX_TOKENS": LENGTH,
    **dict.fromkeys(
        (
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT",
            "IMAGE_RECITATION",
        ),
        CONTENT_FILTER,
    ),
}
# Endings where the model produced nothing usable: a failure, not an empty answer.
FAILED_FINISHES = ("MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS")
GENERATION_PARAMS = {
    "temperature": "temperature",
    "top_p": "topP",
    "max_tokens": "maxOutputTokens",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# Google's documented stand-in for a thought signature on a function call the API did not just
# produce (the neutral messages cannot carry the real one); Gemini 3 rejects such a call without one.
FOREIGN_THOUGHT_SIGNATURE = "skip_thought_signature_validator"
_VERSIONED = re.compile(r"/v\d+(?:alpha|beta)?\d*$")


class GeminiProvider(HttpUpstream):
    hints = {**STATUS_HINTS, 404: "check the model name (e.g. gemini-2.5-flash), and the base URL"}

    name = "gemini"
    free = False
    credential_name: str | None = "gemini"
    pricing_name: str | None = "google"
    media_family = "gemini"

    @classmethod
    def from_settings(cls, settings: Settings) -> GeminiProvider:
        return cls.configured(settings, settings.gemini_base_url, settings.gemini_api_key)

    # ── the request ─────────────────────────────────────────────────────────

    def request(self, call: ProviderCall) -> UpstreamRequest:
        system, contents = _contents(call.messages)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": system}
        config = _generation_config(call.params, call.response_format)
        if config:
            body["generationConfig"] = config
        if call.tools:
            body["tools"] = [{"functionDeclarations": [_declaration(tool) for tool in call.tools]}]
        if call.tool_choice is not None:
            body["toolConfig"] = {"functionCallingConfig": _calling_config(call.tool_choice)}
        base = (call.base_url or self.base_url).rstrip("/")
        if not _VERSIONED.search(base):  # a base URL given with its version (…/v1beta) is kept as it is
            base += f"/{API_VERSION}"
        model = quote(call.model.removeprefix("models/"), safe="/")
        method = "streamGenerateContent?alt=sse" if call.stream else "generateContent"
        return UpstreamRequest(f"{base}/models/{model}:{method}", body)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-goog-api-key": api_key} if api_key else {}

    # ── the answer ──────────────────────────────────────────────────────────

    async def stream(self, call: ProviderCall) -> AsyncIterator[Event]:
        """The shared call; an answer that names no `modelVersion` is reported as the model asked for."""
        async with aclosing(cast(AsyncGenerator[Event, None], super().stream(call))) as events:
            async for event in events:
                if isinstance(event, Started) and event.model == f"{self.name}/":
                    event = Started(f"{self.name}/{call.model}")
                yield event

    async def parse_stream(self, events: AsyncIterator[SseEvent]) -> AsyncGenerator[Event, None]:
        answer = _Answer(self)
        async for sse in events:
            chunk = self.json(sse.data)
            try:
                deltas = answer.read(chunk)
            except SHAPE_ERRORS:
                raise self.unreadable("a chunk", sse.data) from None
            for delta in deltas:
                yield delta
        if answer.finish is None:
            problem = "closed the stream before it finished"
            if not answer.started:
                problem = "closed the stream without sending a single answer"
            raise UpstreamFailure(self.failed("upstream_stream_cut", problem, retryable=not answer.started))
        try:
            ending = answer.ending()
        except SHAPE_ERRORS:
            raise self.unreadable("usage", str(answer.usage)) from None
        for event in ending:
            yield event

    def parse_body(self, body: dict[str, Any]) -> list[Event]:
        answer = _Answer(self)
        events = answer.read(body)  # an error object or a blocked prompt fails here
        candidates = body.get("candidates")
        if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
            raise UpstreamFailure(self.failed("upstream_bad_response", "answered without candidates"))
        return events + answer.ending()  # whole, it is finished even if it does not say so

    # ── failures ────────────────────────────────────────────────────────────

    def status_failure(self, url: str, status: int, body: bytes) -> Failed:
        """Google's error object names its cause in `status` (RESOURCE_EXHAUSTED…), which says
        more than the number; a key Google does not know is answered 400, not 401."""
        error = _google_error(body)
        if error is None:
            return super().status_failure(url, status, body)
        failed = super().status_failure(url, status, orjson.dumps({"error": _named(error)}))
        if status == 400 and "API_KEY_INVALID" in _reasons(error):
            return Failed("upstream_auth_failed", f"{failed.message} ({STATUS_HINTS[401]})")
        return replace(failed, code=CONTEXT_LENGTH_EXCEEDED) if _overflows(error) else failed


class _Answer:
    """One answer read from whole `GenerateContentResponse` objects: a stream's chunks one by one,
    or the single object of a non-streamed call — the same reading, so both give the same events."""

    def __init__(self, provider: GeminiProvider) -> None:
        self.provider = provider
        self.started = False
        self.tool_calls = 0
        self.finish: str | None = None
        self.finish_message = ""
        self.usage: dict[str, Any] = {}

    def read(self, chunk: dict[str, Any]) -> list[Event]:
        provider = self.provider
        if chunk.get("error"):
            error = chunk["error"]
            code = error.get("code") if isinstance(error, dict) else None
            retryable = not self.started and isinstance(code, int) and _retryable(code)
            raise UpstreamFailure(
                provider.failed(
                    CONTEXT_LENGTH_EXCEEDED if _overflows(error) else "upstream_error",
                    f"{'failed mid-stream' if self.started else 'answered with an error'}: "
                    f"{error_message(_named(error))}",
                    retryable,
                )
            )
        blocked = (chunk.get("promptFeedback") or {}).get("blockReason")
        if blocked:
            feedback = chunk["promptFeedback"]
            why = f": {feedback['blockReasonMessage']}" if feedback.get("blockReasonMessage") else ""
            raise UpstreamFailure(
                provider.failed("upstream_rejected", f"blocked the prompt ({blocked}){why}; rephrase it")
            )
        events: list[Event] = []
        if not self.started:
            self.started = True
            version = str(chunk.get("modelVersion") or "").removeprefix("models/")
            events.append(Started(f"{provider.name}/{version}"))  # no version: `stream` names the model
        candidates = chunk.get("candidates") or []
        if candidates:
            candidate = candidates[0]
            for part in (candidate.get("content") or {}).get("parts") or []:
                events += self._part(part)
            if candidate.get("finishReason"):
                self.finish = str(candidate["finishReason"])
                self.finish_message = str(candidate.get("finishMessage") or "")
        if chunk.get("usageMetadata"):
            self.usage = dict(chunk["usageMetadata"])
        return events

    def _part(self, part: dict[str, Any]) -> list[Event]:
        if "functionCall" in part:
            call = part["functionCall"]
            index, self.tool_calls = self.tool_calls, self.tool_calls + 1
            arguments = orjson.dumps(call.get("args") or {}).decode()
            return [ToolCallDelta(index, call.get("id") or _call_id(), str(call["name"]), arguments)]
        text = part.get("text")
        if not text:  # an empty text, or a part this adapter does not carry (a lone signature, inline data)
            return []
        return [ReasoningDelta(str(text)) if part.get("thought") else TextDelta(str(text))]

    def ending(self) -> list[Event]:
        """Usage (always, zero if Gemini reported none), then how the answer ended."""
        raw = self.usage
        thoughts = int(raw.get("thoughtsTokenCount") or 0)
        usage = Usage(
            input=int(raw.get("promptTokenCount") or 0),
            cached_input=int(raw.get("cachedContentTokenCount") or 0),
            output=int(raw.get("candidatesTokenCount") or 0) + thoughts,
            reasoning=thoughts,
        )
        finish = self.finish or "STOP"
        if finish in FAILED_FINISHES:
            why = f": {self.finish_message}" if self.finish_message else ""
            # Not retryable: `Started` (and any text) already went out.
            ended: Event = self.provider.failed("upstream_error", f"ended the answer with {finish}{why}")
        elif self.tool_calls and finish == "STOP":
            ended = Finished(TOOL_CALLS)
        else:
            ended = Finished(FINISH_REASONS.get(finish, STOP))
        return [usage, ended]


# ── request pieces ──────────────────────────────────────────────────────────


def _contents(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System text parts, and the conversation as Gemini `contents`: consecutive messages of one
    role share a turn, so parallel tool results arrive together as Gemini expects."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name: Gemini pairs results by name

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for position, message in enumerate(messages):
        role = message.get("role")
        content = message.get("content")
        text = "" if content is None or isinstance(content, list) else str(content)
        if role == "system":
            system += _parts(content)
        elif role == "user":
            add("user", _parts(content))
        elif role == "assistant":
            parts: list[dict[str, Any]] = _parts(content)
            for number, call in enumerate(message.get("tool_calls") or []):
                names[str(call.get("id"))] = call["name"]
                part: dict[str, Any] = {"functionCall": {"name": call["name"], "args": _args(call)}}
                if number == 0:
                    part["thoughtSignature"] = FOREIGN_THOUGHT_SIGNATURE
                parts.append(part)
            add("model", parts)
        elif role == "tool":
            call_id = str(message.get("tool_call_id"))
            name = names.get(call_id) or message.get("name")
            if not name:
                raise ValidationFailed(
                    f"messages[{position}]: a tool result for call {call_id!r}, "
                    "which no earlier assistant message made"
                )
            add("user", [{"functionResponse": {"name": name, "response": _tool_result(text)}}])
        else:
            raise ValidationFailed(f"messages[{position}]: Gemini takes no {role!r} role")
    return system, contents


def _parts(content: Any) -> list[dict[str, Any]]:
    """A message's content as Gemini parts: text as `text`; an image or a document as
    `inline_data` (its data: URL's media type and base64) or, for a URL, `file_data` with the
    URL as `file_uri` and its media type (declared, or guessed from the file name)."""
    if not isinstance(content, list):
        text = "" if content is None else str(content)
        return [{"text": text}] if text else []
    parts: list[dict[str, Any]] = []
    for part in content:
        if part["type"] == "text":
            parts += [{"text": part["text"]}] if part["text"] else []
            continue
        data = parse_data_url(part["source"])
        if data is not None:
            parts.append({"inline_data": {"mime_type": data.media_type, "data": data.payload}})
        else:
            kind, declared = part["type"], part.get("media_type")
            media_type = media_type_of(kind, part["source"], declared)
            parts.append({"file_data": {"mime_type": media_type, "file_uri": part["source"]}})
    return parts


def _args(call: dict[str, Any]) -> dict[str, Any]:
    raw = call.get("arguments") or "{}"
    try:
        args = orjson.loads(raw)
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        raise ValidationFailed(
            f"tool call {call.get('id')!r} ({call.get('name')}): its arguments must be a JSON object; "
            f"got {str(raw)[:100]!r}"
        )
    return args


def _tool_result(text: str) -> dict[str, Any]:
    """A `functionResponse.response` is a JSON object: a result that is one is passed as it is,
    anything else under `output` (the key Google's SDKs use)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {"output": text}


def _generation_config(params: dict[str, Any], response_format: dict[str, Any] | None) -> dict[str, Any]:
    config: dict[str, Any] = {GENERATION_PARAMS[k]: v for k, v in params.items() if k in GENERATION_PARAMS}
    if params.get("stop"):
        stop = params["stop"]
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    effort = params.get("reasoning_effort")
    if effort is not None:
        if effort not in REASONING_BUDGETS:
            raise ValidationFailed(
                f"params.reasoning_effort: expected one of {', '.join(REASONING_BUDGETS)}; got {effort!r}"
            )
        config["thinkingConfig"] = {"thinkingBudget": REASONING_BUDGETS[effort], "includeThoughts": True}
    kind = (response_format or {}).get("type")
    if kind in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
    if kind == "json_schema" and response_format and response_format.get("schema"):
        config["responseJsonSchema"] = response_format["schema"]
    return config


def _declaration(tool: dict[str, Any]) -> dict[str, Any]:
    """A neutral tool as a function declaration; its parameters are JSON Schema, which Gemini takes
    whole as `parametersJsonSchema` (`parameters` accepts only an OpenAPI subset of it)."""
    declaration: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        declaration["description"] = tool["description"]
    if tool.get("parameters"):
        declaration["parametersJsonSchema"] = tool["parameters"]
    return declaration


def _calling_config(choice: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(choice, dict):
        return {"mode": "ANY", "allowedFunctionNames": [choice["name"]]}
    if choice not in TOOL_MODES:
        raise ValidationFailed(f"tool_choice: expected one of {', '.join(TOOL_MODES)}; got {choice!r}")
    return {"mode": TOOL_MODES[choice]}


# ── answer pieces ───────────────────────────────────────────────────────────


def _call_id() -> str:
    """Gemini 2.x names no function call; callers pair results by id, so each call gets one."""
    return f"call_{uuid.uuid4().hex[:24]}"


def _retryable(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def _google_error(body: bytes) -> dict[str, Any] | None:
    """Google's `{"error": {"code", "message", "status", "details"}}`, bare or wrapped in a list."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(parsed, list) and parsed:
        parsed = parsed[0]
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error if isinstance(error, dict) and error.get("message") else None


def _named(error: Any) -> Any:
    """The error on one line (Google lists request problems one per line), with its status name
    (RESOURCE_EXHAUSTED) as the code a message shows."""
    if not isinstance(error, dict) or not error.get("message"):
        return error
    return {
        "message": " ".join(str(error["message"]).split()),
        "code": error.get("status") or error.get("code"),
    }


# How Gemini words a prompt over the model's context (an INVALID_ARGUMENT): "The input token
# count (1270115) exceeds the maximum number of tokens allowed (1048576)."
OVERFLOW = re.compile(r"input token count .* exceeds the maximum number of tokens", re.IGNORECASE)


def _overflows(error: Any) -> bool:
    return isinstance(error, dict) and bool(OVERFLOW.search(str(error.get("message") or "")))


def _reasons(error: dict[str, Any]) -> list[str]:
    details = error.get("details")
    if not isinstance(details, list):
        return []
    return [str(d.get("reason")) for d in details if isinstance(d, dict) and d.get("reason")]
