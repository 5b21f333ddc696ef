"""Any OpenAI-compatible chat-completions upstream: OpenAI itself, Ollama, vLLM,
llama.cpp's server, Groq, Together…

Streams with `stream_options.include_usage` so token counts arrive at the end
of the stream; non-streaming calls are answered in one request. Every upstream
problem (refused connection, error status, garbage, silence, a cut stream)
becomes a `Failed` event with a message naming the upstream.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
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
        self.total_timeout = total_timeout
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
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
        try:
            async with self.client.stream(
                "POST", self.url, content=orjson.dumps(self.payload(call))
            ) as response:
                if response.status_code >= 400:
                    yield self._status_failure(response.status_code, await response.aread())
                    return
                if call.stream:
                    async for event in self._from_sse(response, deadline):
                        yield event
                else:
                    for event in self._from_completion(_json(await response.aread(), self.name)):
                        yield event
        except UpstreamFailure as failure:
            yield failure.failed
        except httpx.ConnectError as exc:
            yield Failed(
                "upstream_unreachable",
                f"{self.name} upstream at {self.url} refused or failed the connection: {exc}",
                retryable=True,
            )
        except httpx.TimeoutException:
            yield Failed(
                "upstream_timeout", f"{self.name} upstream sent nothing for too long", retryable=True
            )
        except httpx.HTTPError as exc:
            yield Failed("upstream_error", f"{self.name} upstream connection failed: {exc!r}", retryable=True)

    def _status_failure(self, status: int, body: bytes) -> Failed:
        detail = body[:500].decode(errors="replace")
        try:
            parsed = orjson.loads(body)
            if isinstance(parsed, dict):
                error = parsed.get("error")
                detail = error.get("message", detail) if isinstance(error, dict) else str(error or detail)
        except orjson.JSONDecodeError:
            pass
        code = {
            401: "upstream_auth_failed",
            403: "upstream_auth_failed",
            404: "upstream_not_found",
            429: "upstream_rate_limited",
        }.get(status, "upstream_error" if status >= 500 else "upstream_rejected")
        return Failed(
            code,
            f"{self.name} upstream answered HTTP {status}: {detail}",
            retryable=status == 429 or status >= 500,
        )

    async def _from_sse(self, response: httpx.Response, deadline: float) -> AsyncIterator[Event]:
        started = finished = False
        stop_reason: str | None = None
        usage: Usage | None = None
        async for line in response.aiter_lines():
            if time.monotonic() > deadline:
                raise UpstreamFailure(
                    Failed(
                        "upstream_timeout",
                        f"{self.name} upstream exceeded the total time limit",
                        retryable=False,
                    )
                )
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                finished = True
                break
            chunk = _json(data.encode(), self.name)
            if "error" in chunk:
                raise UpstreamFailure(
                    Failed(
                        "upstream_error",
                        f"{self.name} upstream failed mid-stream: {_error_message(chunk['error'])}",
                    )
                )
            if not started:
                started = True
                yield Started(f"{self.name}/{chunk.get('model') or 'unknown'}")
            if chunk.get("usage"):
                usage = _usage(chunk["usage"])
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if reasoning:
                    yield ReasoningDelta(reasoning)
                if delta.get("content"):
                    yield TextDelta(delta["content"])
                for tool in delta.get("tool_calls") or []:
                    function = tool.get("function") or {}
                    yield ToolCallDelta(
                        tool.get("index", 0),
                        tool.get("id"),
                        function.get("name"),
                        function.get("arguments") or "",
                    )
                if choice.get("finish_reason"):
                    stop_reason = FINISH_REASONS.get(choice["finish_reason"], STOP)
        if stop_reason is None and not finished:
            raise UpstreamFailure(
                Failed(
                    "upstream_stream_cut",
                    f"{self.name} upstream closed the stream before it finished",
                    retryable=False,
                )
            )
        if usage is not None:
            yield usage
        yield Finished(stop_reason or STOP)

    def _from_completion(self, body: dict[str, Any]) -> list[Event]:
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise UpstreamFailure(
                Failed("upstream_bad_response", f"{self.name} upstream answered without choices")
            )
        message = choices[0].get("message") or {}
        events: list[Event] = [Started(f"{self.name}/{body.get('model') or 'unknown'}")]
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if reasoning:
            events.append(ReasoningDelta(reasoning))
        if message.get("content"):
            events.append(TextDelta(message["content"]))
        for index, tool in enumerate(message.get("tool_calls") or []):
            function = tool.get("function") or {}
            events.append(
                ToolCallDelta(index, tool.get("id"), function.get("name"), function.get("arguments") or "")
            )
        if body.get("usage"):
            events.append(_usage(body["usage"]))
        events.append(Finished(FINISH_REASONS.get(choices[0].get("finish_reason") or "stop", STOP)))
        return events

    async def aclose(self) -> None:
        await self.client.aclose()


def _json(raw: bytes, name: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamFailure(
            Failed(
                "upstream_bad_response",
                f"{name} upstream sent something that is not JSON: {raw[:200].decode(errors='replace')!r}",
            )
        ) from None
    if not isinstance(value, dict):
        raise UpstreamFailure(
            Failed("upstream_bad_response", f"{name} upstream sent JSON that is not an object")
        )
    return value


def _error_message(error: Any) -> str:
    return str(error.get("message", error)) if isinstance(error, dict) else str(error)


def _usage(raw: dict[str, Any]) -> Usage:
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        input=int(raw.get("prompt_tokens") or 0),
        cached_input=int(prompt_details.get("cached_tokens") or 0),
        output=int(raw.get("completion_tokens") or 0),
        reasoning=int(completion_details.get("reasoning_tokens") or 0),
    )
