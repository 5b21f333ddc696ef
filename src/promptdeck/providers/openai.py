"""Any OpenAI-compatible chat-completions upstream: OpenAI itself, Ollama, vLLM,
llama.cpp's server, Groq, Together…

Streams with `stream_options.include_usage` so token counts arrive at the end
of the stream; non-streaming calls are answered in one request. Every upstream
problem (refused connection, error status, garbage, silence, a cut stream)
becomes a `Failed` event with a message naming the upstream. A failure is
`retryable` only while nothing has reached the caller yet.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import httpx
import orjson

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
from promptdeck.providers.base import ProviderCall

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
)
STATUS_CODES = {
    401: "upstream_auth_failed",
    403: "upstream_auth_failed",
    404: "upstream_not_found",
    408: "upstream_timeout",
    429: "upstream_rate_limited",
}
STATUS_HINTS = {
    401: "check the API key configured for it",
    403: "check the API key configured for it",
    404: "check the model name, and the base URL (it usually ends in /v1)",
    429: "slow down, or raise the upstream's limits",
}
RETRYABLE_STATUSES = (408, 409, 429)  # and every 5xx, as OpenAI's own client does
SHAPE_ERRORS = (AttributeError, TypeError, ValueError, KeyError)  # JSON that is not the documented shape
SSE_FIELDS = (":", "event:", "id:", "retry:")
_TAGS = re.compile(r"<[^>]*>")


class UpstreamFailure(Exception):
    def __init__(self, failed: Failed) -> None:
        super().__init__(failed.message)
        self.failed = failed


class OpenAIProvider:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        name: str = "openai",
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        total_timeout: float = 300.0,
    ) -> None:
        self.name = name
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.client = httpx.AsyncClient(
            headers=headers,
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=256),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIProvider:
        return cls(
            settings.openai_base_url,
            settings.openai_api_key,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
            total_timeout=settings.upstream_total_timeout,
        )

    def payload(self, call: ProviderCall) -> dict[str, Any]:
        """The exact JSON body the upstream receives."""
        body: dict[str, Any] = {"model": call.model, "messages": call.messages}
        body.update((k, call.params[k]) for k in PASSED_PARAMS if k in call.params)
        if call.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def stream(self, call: ProviderCall) -> AsyncIterator[Event]:
        deadline = time.monotonic() + self.total_timeout
        # A non-streamed answer arrives in one piece once the whole generation is done, so
        # silence until then is normal: only the total limit can judge it.
        silence = self.read_timeout if call.stream else self.total_timeout
        timeout = httpx.Timeout(silence, connect=self.connect_timeout)
        limit = "read timeout" if call.stream else "total time limit"
        opened = sent = False  # an event stream began; an event reached the caller
        try:
            async with self.client.stream(
                "POST", self.url, content=orjson.dumps(self.payload(call)), timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    yield self._status_failure(response.status_code, await response.aread())
                    return
                # Some servers ignore `stream: true` and answer in one JSON object.
                if call.stream and "json" not in response.headers.get("content-type", ""):
                    opened = True
                    async with aclosing(self._from_sse(response, deadline)) as events:
                        async for event in events:
                            sent = True
                            yield event
                else:
                    for event in self._from_completion(self._json(await response.aread())):
                        yield event
        except UpstreamFailure as failure:
            yield failure.failed
        except httpx.HTTPError as exc:
            yield self._transport_failure(exc, f"{silence:g} s (the upstream {limit})", opened, sent)

    def _failed(self, code: str, problem: str, retryable: bool = False) -> Failed:
        return Failed(code, f"{self.name} upstream {problem}", retryable)

    def _status_failure(self, status: int, body: bytes) -> Failed:
        phrase = httpx.codes.get_reason_phrase(status)
        detail = _error_detail(body)
        hint = STATUS_HINTS.get(status)
        return self._failed(
            STATUS_CODES.get(status, "upstream_error" if status >= 500 else "upstream_rejected"),
            f"at {self.url} answered HTTP {status} {phrase}".rstrip()
            + (f": {detail}" if detail else "")
            + (f" ({hint})" if hint else ""),
            retryable=status in RETRYABLE_STATUSES or status >= 500,
        )

    def _transport_failure(self, exc: httpx.HTTPError, limit: str, opened: bool, sent: bool) -> Failed:
        """Once an event has gone out, a retry would repeat it: only an untouched call is retryable."""
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return self._failed(
                "upstream_unreachable",
                f"at {self.url} cannot be reached ({what}); is it running, and is the base URL right?",
                retryable=True,
            )
        if isinstance(exc, httpx.ReadTimeout):
            return self._failed(
                "upstream_timeout",
                f"at {self.url} sent nothing{' more' if sent else ''} for {limit}",
                retryable=not sent,
            )
        if isinstance(exc, httpx.TimeoutException):
            return self._failed("upstream_timeout", f"at {self.url} timed out ({what})", retryable=not sent)
        if opened:
            return self._failed(
                "upstream_stream_cut", f"broke the stream off before it finished ({what})", retryable=not sent
            )
        return self._failed(
            "upstream_error", f"at {self.url}: the connection failed ({what})", retryable=True
        )

    async def _from_sse(self, response: httpx.Response, deadline: float) -> AsyncGenerator[Event, None]:
        started = done = answered = False
        stop_reason: str | None = None
        usage: Usage | None = None
        stray = ""  # the start of whatever is not server-sent events, to show in a failure
        async for line in response.aiter_lines():
            if time.monotonic() > deadline:
                raise UpstreamFailure(
                    self._failed(
                        "upstream_timeout", f"exceeded the total time limit of {self.total_timeout:g} s"
                    )
                )
            if not line.startswith("data:"):
                if line.strip() and not line.startswith(SSE_FIELDS):
                    stray = f"{stray} {line.strip()}".strip()[:200]
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            chunk = self._json(data.encode())
            if chunk.get("error"):
                raise UpstreamFailure(
                    self._failed("upstream_error", f"failed mid-stream: {_error_message(chunk['error'])}")
                )
            if not started:
                started = True
                yield Started(f"{self.name}/{chunk.get('model') or 'unknown'}")
            try:
                events: list[Event] = []
                for choice in chunk.get("choices") or []:
                    answered = True
                    events += _message_events(choice.get("delta") or {})
                    if choice.get("finish_reason"):
                        stop_reason = FINISH_REASONS.get(choice["finish_reason"], STOP)
                if chunk.get("usage"):
                    usage = _usage(chunk["usage"])
            except SHAPE_ERRORS:
                raise UpstreamFailure(
                    self._failed("upstream_bad_response", f"sent a chunk it cannot read: {data[:200]}")
                ) from None
            for event in events:
                yield event
        if not started and stray:
            raise UpstreamFailure(
                self._failed("upstream_bad_response", f"answered with no event stream: {stray!r}")
            )
        if stop_reason is None and not done:
            problem = "closed the stream before it finished"
            if not started:  # e.g. llama.cpp's Python server when the prompt overflows its context
                problem = "closed the stream without sending a single event; its own log may say why"
            raise UpstreamFailure(self._failed("upstream_stream_cut", problem, retryable=not started))
        if not answered:
            raise UpstreamFailure(self._failed("upstream_bad_response", "streamed no choices"))
        if usage is not None:
            yield usage
        yield Finished(stop_reason or STOP)

    def _from_completion(self, body: dict[str, Any]) -> list[Event]:
        choices = body.get("choices")
        if body.get("error") and not choices:
            raise UpstreamFailure(
                self._failed("upstream_error", f"answered with an error: {_error_message(body['error'])}")
            )
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise UpstreamFailure(self._failed("upstream_bad_response", "answered without choices"))
        try:
            events: list[Event] = [Started(f"{self.name}/{body.get('model') or 'unknown'}")]
            events += _message_events(choices[0].get("message") or {})
            if body.get("usage"):
                events.append(_usage(body["usage"]))
            events.append(Finished(FINISH_REASONS.get(choices[0].get("finish_reason") or "stop", STOP)))
        except SHAPE_ERRORS:
            raise UpstreamFailure(
                self._failed(
                    "upstream_bad_response", f"answered a completion it cannot read: {str(choices[0])[:200]}"
                )
            ) from None
        return events

    def _json(self, raw: bytes) -> dict[str, Any]:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            shown = raw[:200].decode(errors="replace")
            raise UpstreamFailure(
                self._failed("upstream_bad_response", f"sent something that is not JSON: {shown!r}")
            ) from None
        if not isinstance(value, dict):
            raise UpstreamFailure(self._failed("upstream_bad_response", "sent JSON that is not an object"))
        return value

    async def aclose(self) -> None:
        await self.client.aclose()


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


def _error_message(error: Any) -> str:
    """OpenAI's `{"message", "type", "code"}`, as one line with the code that names the cause."""
    if not isinstance(error, dict) or not error.get("message"):
        return str(error)
    code = error.get("code")
    return f"{error['message']} ({code})" if code else str(error["message"])


def _error_detail(body: bytes) -> str:
    """The upstream's own words from an error body: OpenAI's error object, FastAPI's `detail`,
    or the text itself (an HTML page stripped to its words), on one short line."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and ("error" in parsed or "detail" in parsed):
        return _error_message(parsed["error"]) if "error" in parsed else str(parsed["detail"])
    text = body[:2000].decode(errors="replace")
    if text.lstrip().startswith("<"):
        text = _TAGS.sub(" ", text)
    return " ".join(text.split())[:300]


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
