"""The one pipeline behind every dialect.

`Engine.start()` does everything that can fail before the first byte (resolve,
validate, render, pick a provider) and raises a `PromptdeckError` for it.
`Invocation.events()` then streams normalized events while recording the run;
`Invocation.complete()` drains the same stream for non-streaming callers, so
the two modes cannot disagree. Whatever happens, the run is handed to the
writer exactly once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from promptdeck.domain.deployments import Deployment
from promptdeck.domain.errors import NotFound, PromptdeckError
from promptdeck.domain.events import (
    Event,
    Failed,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from promptdeck.domain.inputs import render_messages, resolve_inputs
from promptdeck.domain.runs import ERROR, RunRecord
from promptdeck.engine.auth import Caller
from promptdeck.engine.ttl_cache import TtlCache
from promptdeck.providers.base import Provider, ProviderCall, Providers
from promptdeck.store.catalog import CatalogStore
from promptdeck.store.run_writer import RunWriter

CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class InvokeRequest:
    caller: Caller
    dialect: str
    deployment: str
    variant: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    metadata: dict[str, Any] | None = None
    end_user: str | None = None
    external_id: str | None = None


class Invocation:
    def __init__(
        self, record: RunRecord, provider: Provider, call: ProviderCall, writer: RunWriter, started: float
    ) -> None:
        self.record = record
        self._provider = provider
        self._call = call
        self._writer = writer
        self._started = started
        self._consumed = False

    async def events(self) -> AsyncIterator[Event]:
        """The provider's events, recorded as they pass. Ends after `Finished` or `Failed`."""
        if self._consumed:
            raise RuntimeError("an invocation's events can be read once")
        self._consumed = True
        record = self.record
        text: list[str] = []
        reasoning: list[str] = []
        tools: dict[int, dict[str, Any]] = {}
        ended = False
        try:
            async for event in _guarded(self._provider.stream(self._call)):
                if isinstance(event, TextDelta | ReasoningDelta):
                    if record.ttft_ms is None:
                        record.ttft_ms = self.elapsed_ms()
                    (text if isinstance(event, TextDelta) else reasoning).append(event.text)
                elif isinstance(event, Started):
                    record.model = event.model
                elif isinstance(event, ToolCallDelta):
                    _add_tool_delta(tools, event)
                elif isinstance(event, Usage):
                    record.input_tokens = event.input
                    record.cached_input_tokens = event.cached_input
                    record.cache_write_input_tokens = event.cache_write_input
                    record.output_tokens = event.output
                    record.reasoning_tokens = event.reasoning
                elif isinstance(event, Finished):
                    record.stop_reason = event.stop_reason
                    ended = True
                elif isinstance(event, Failed):
                    record.status, record.error_code, record.error_message = ERROR, event.code, event.message
                    ended = True
                yield event
                if ended:
                    break
        finally:
            if not ended:
                record.status, record.error_code = ERROR, CANCELLED
                record.error_message = "the caller went away before the run ended"
            record.output, record.reasoning = "".join(text), "".join(reasoning)
            record.tool_calls = [tools[i] for i in sorted(tools)] or None
            record.duration_ms = self.elapsed_ms()
            await self._writer.put(record)

    async def complete(self) -> RunRecord:
        """Run to the end and return the finished record (the non-streaming path)."""
        async for _ in self.events():
            pass
        return self.record

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self._started) * 1000


async def _guarded(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """A provider that raises instead of failing cleanly still ends in a `Failed` event."""
    try:
        async for event in events:
            yield event
    except Exception as exc:
        yield Failed("provider_error", f"the provider failed unexpectedly: {exc}")


def _add_tool_delta(tools: dict[int, dict[str, Any]], delta: ToolCallDelta) -> None:
    call = tools.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
    call["id"] = delta.id or call["id"]
    call["name"] = delta.name or call["name"]
    call["arguments"] += delta.arguments_delta


class Engine:
    def __init__(
        self, catalog: CatalogStore, providers: Providers, writer: RunWriter, cache_ttl: float
    ) -> None:
        self.catalog = catalog
        self.providers = providers
        self.writer = writer
        self.deployments: TtlCache[tuple[str, str], Deployment | None] = TtlCache(
            self._load_deployment, cache_ttl
        )

    async def start(self, request: InvokeRequest) -> Invocation:
        """Resolve and check everything; raises before any provider call if the request is bad.
        A refused request is still logged as a failed run."""
        started = time.perf_counter()
        record = RunRecord(
            workspace_id=request.caller.workspace_id,
            dialect=request.dialect,
            deployment=request.deployment,
            streamed=request.stream,
            variant=request.variant,
            inputs=request.inputs,
            metadata=request.metadata,
            end_user=request.end_user,
            external_id=request.external_id,
            api_key_id=request.caller.key_id,
        )
        try:
            deployment = await self.deployments.get((request.caller.workspace_id, request.deployment))
            if deployment is None:
                raise NotFound(f"no deployment named {request.deployment!r}")
            record.deployment_id = deployment.id
            record.variant, version = deployment.resolve(request.variant)
            record.version_id, record.version_number = version.id, version.number
            record.model = version.spec.model
            values = resolve_inputs(version.spec, request.inputs)
            messages = [{"role": m.role, "content": m.content} for m in render_messages(version.spec, values)]
            record.messages = messages
            provider, model = self.providers.pick(version.spec.model)
            record.provider = provider.name
        except PromptdeckError as exc:
            record.status, record.error_code, record.error_message = ERROR, exc.code, exc.message
            record.duration_ms = (time.perf_counter() - started) * 1000
            await self.writer.put(record)
            raise
        call = ProviderCall(model, messages, dict(version.spec.params), stream=request.stream)
        return Invocation(record, provider, call, self.writer, started)

    async def _load_deployment(self, key: tuple[str, str]) -> Deployment | None:
        """None for an unknown name, so a flood of bad names is answered from memory too."""
        try:
            return await self.catalog.load_deployment(*key)
        except NotFound:
            return None

    def forget_deployments(self) -> None:
        """Called after any catalog write, so the next call sees it."""
        self.deployments.invalidate()
