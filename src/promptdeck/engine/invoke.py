"""The one pipeline behind every dialect.

`Engine.start()` does everything that can fail before the first byte (resolve,
validate, render, pick providers) and raises a `PromptdeckError` for it.
`Invocation.events()` then streams normalized events while recording the run;
`Invocation.complete()` drains the same stream for non-streaming callers, so
the two modes cannot disagree. Whatever happens, the run is handed to the
writer exactly once.

Between the two sit the variant's reliability rules: each candidate (the
variant's model, then its fallbacks) is tried in turn, retryable failures are
retried with backoff, a circuit breaker skips upstreams that keep failing, and
nothing is ever retried once an event has reached the caller.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any

from promptdeck.domain.deployments import Deployment, Version
from promptdeck.domain.errors import NotFound, PromptdeckError, ProviderFailed, RateLimited, ValidationFailed
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
from promptdeck.domain.override_policy import check_raw_overrides
from promptdeck.domain.prompts import param_problems
from promptdeck.domain.reliability import VariantConfig
from promptdeck.domain.runs import ERROR, RunRecord
from promptdeck.domain.templating import JINJA2
from promptdeck.engine import template_renders
from promptdeck.engine.auth import Caller
from promptdeck.engine.circuit import CircuitBreakers
from promptdeck.engine.pricing import Price, PriceList
from promptdeck.engine.ttl_cache import TtlCache
from promptdeck.providers.base import Provider, ProviderCall, Providers
from promptdeck.store.catalog import CatalogStore
from promptdeck.store.credentials import Credential, CredentialStore
from promptdeck.store.prices import PriceOverrides
from promptdeck.store.run_writer import RunWriter

CANCELLED = "cancelled"
UPSTREAM_TIMEOUT = "upstream_timeout"
UPSTREAM_RATE_LIMITED = "upstream_rate_limited"
CHARS_PER_TOKEN = 4  # for estimates only, when an upstream reports no usage


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
    # What a dialect may change for one call (checked by `Engine.start`):
    messages: list[dict[str, Any]] | None = None  # appended after the version's own messages
    model: str | None = None  # instead of the version's model (fallbacks keep theirs)
    params: dict[str, Any] | None = None  # over the version's parameters, key by key
    tools: list[dict[str, Any]] | None = None  # instead of the version's
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    raw_overrides: dict[str, Any] | None = None
    keep_raw: bool = False  # keep the upstream's raw answer (`Invocation.raw`)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One way to answer: a provider, the exact call, the model id and version it stands for."""

    provider: Provider
    call: ProviderCall
    model_id: str
    version: Version
    messages: list[dict[str, Any]]
    fallback: int = 0  # 0: the variant's own model; n: its n-th fallback

    workspace_id: str = ""

    @property
    def upstream(self) -> str:
        """What a circuit breaker guards: one workspace's calls to a provider at one URL. Per
        workspace, so one workspace's failing credential or URL never opens another's circuit."""
        url = (self.call.raw_overrides or {}).get("url") or self.call.base_url or ""
        return f"{self.workspace_id}|{self.provider.name}|{url}"


class Invocation:
    def __init__(
        self,
        record: RunRecord,
        candidates: list[Candidate],
        config: VariantConfig,
        engine: Engine,
        overrides: dict[str, Price],
        started: float,
    ) -> None:
        self.record = record
        self._candidates = candidates
        self._config = config
        self._engine = engine
        self._overrides = overrides
        self._started = started
        self._consumed = False
        self._attempts: list[dict[str, Any]] = []
        self.raw: dict[str, Any] = {}  # the upstream's raw answer, when the request kept it
        self.failure: Failed | None = None  # the event that ended a failed run
        self._trying: tuple[Candidate, int, float] | None = None  # the attempt under way, not yet noted

    async def events(self) -> AsyncIterator[Event]:
        """The answer's events, recorded as they pass. Ends after `Finished` or `Failed`."""
        if self._consumed:
            raise RuntimeError("an invocation's events can be read once")
        self._consumed = True
        record = self.record
        text: list[str] = []
        reasoning: list[str] = []
        tools: dict[int, dict[str, Any]] = {}
        usage: Usage | None = None
        ended = False
        try:
            async for event in self._answer():
                if isinstance(event, TextDelta | ReasoningDelta):
                    if record.ttft_ms is None:
                        record.ttft_ms = self.elapsed_ms()
                    (text if isinstance(event, TextDelta) else reasoning).append(event.text)
                elif isinstance(event, Started):
                    record.model = event.model
                elif isinstance(event, ToolCallDelta):
                    _add_tool_delta(tools, event)
                elif isinstance(event, Usage):
                    usage = event
                    self._account(usage)
                elif isinstance(event, Finished):
                    if _missing(usage, text, reasoning):  # the upstream reported none: count, and say so
                        usage = self._estimate("".join(text) + "".join(reasoning))
                        self._account(usage)
                        yield usage
                    record.stop_reason = event.stop_reason
                    self.raw = event.raw or {}
                    ended = True
                elif isinstance(event, Failed):
                    record.status, record.error_code, record.error_message = ERROR, event.code, event.message
                    self.failure = event
                    ended = True
                yield event
                if ended:
                    break
        finally:
            if not ended:
                record.status, record.error_code = ERROR, CANCELLED
                record.error_message = "the caller went away before the run ended"
                if self._trying is not None:  # the attempt under way ends here too
                    candidate, attempt, began = self._trying
                    self._engine.breakers.released(candidate.upstream)
                    cut = Failed(CANCELLED, record.error_message)
                    self._note(candidate, attempt, cut, time.perf_counter() - began)
            record.output, record.reasoning = "".join(text), "".join(reasoning)
            record.tool_calls = [tools[i] for i in sorted(tools)] or None
            record.attempts = self._attempts or None
            record.duration_ms = self.elapsed_ms()
            await self._engine.writer.put(record)

    async def complete(self) -> RunRecord:
        """Run to the end and return the finished record (the non-streaming path)."""
        async for _ in self.events():
            pass
        return self.record

    def error(self) -> PromptdeckError:
        """A failed run as the error a non-streaming caller gets: an upstream's rate limit is the
        caller's 429 with the upstream's Retry-After; any other failure a provider error (502)."""
        failed = self.failure
        message = self.record.error_message or "the provider failed"
        if failed is not None and failed.code == UPSTREAM_RATE_LIMITED:
            return RateLimited(message, retry_after=failed.retry_after or 1.0)
        return ProviderFailed(message)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self._started) * 1000

    # ── retries, fallbacks, breakers ─────────────────────────────────────────

    async def _answer(self) -> AsyncIterator[Event]:
        """Try each candidate in turn until one answers; nothing already sent is sent twice."""
        config, breakers = self._config, self._engine.breakers
        last = Failed("provider_error", "no model could be called for this variant")
        for candidate in self._candidates:
            for attempt in range(1, config.max_attempts + 1):
                if not breakers.allows(candidate.upstream):
                    last = Failed(
                        "circuit_open",
                        f"{candidate.provider.name} failed {breakers.threshold} times in a row, so "
                        f"promptdeck stops calling it for {breakers.cooldown:g} s; last failure: "
                        f"{breakers.why_open(candidate.upstream)}",
                        retryable=True,
                    )
                    self._note(candidate, attempt, last, 0.0)
                    break
                began = time.perf_counter()
                self._trying = (candidate, attempt, began)
                held: Started | None = None  # sent only once the attempt has something to say
                sent = False
                failure: Failed | None = None
                async with aclosing(self._timed(candidate)) as events:  # the upstream call ends here
                    async for event in events:
                        if isinstance(event, Failed):
                            failure = event
                            break
                        if isinstance(event, Started):
                            held = event
                            continue
                        if not sent:
                            self._serving(candidate)
                            sent = True
                        if held is not None:
                            yield held
                            held = None
                        if isinstance(event, Finished):  # settled first: the caller stops reading at it
                            breakers.succeeded(candidate.upstream)
                            self._note(candidate, attempt, None, time.perf_counter() - began)
                            self._trying = None
                            yield event
                            return
                        yield event
                failure = failure or Failed(
                    "provider_error", f"{candidate.provider.name} ended without an answer"
                )
                self._note(candidate, attempt, failure, time.perf_counter() - began)
                self._trying = None
                if failure.retryable or failure.code == UPSTREAM_TIMEOUT:  # a silent upstream counts
                    breakers.failed(candidate.upstream, failure.message)
                else:
                    breakers.released(candidate.upstream)
                if sent:  # the caller already has part of this answer: it cannot be redone
                    yield failure
                    return
                last = failure
                delay = self._backoff(attempt, failure)
                if delay is None or attempt == config.max_attempts:
                    break
                await asyncio.sleep(delay)
        yield last

    def _backoff(self, attempt: int, failure: Failed) -> float | None:
        """Seconds before the next attempt, or None when this candidate should not be retried."""
        config = self._config
        if not failure.retryable:
            return None
        if failure.retry_after is not None:
            return float(failure.retry_after) if failure.retry_after <= config.max_backoff_seconds else None
        delay = min(config.max_backoff_seconds, config.backoff_seconds * 2.0 ** (attempt - 1))
        return delay * (0.5 + random.random() / 2)  # jitter: replicas must not retry in step

    async def _timed(self, candidate: Candidate) -> AsyncGenerator[Event, None]:
        """The provider's events within the variant's first-byte and total limits."""
        config = self._config
        first_byte = config.first_byte_timeout if candidate.call.stream else None
        events = _guarded(candidate.provider.stream(candidate.call))
        if first_byte is None and config.total_timeout is None:
            async for event in events:
                yield event
            return
        deadline = time.monotonic() + config.total_timeout if config.total_timeout else None
        first = True
        try:
            while True:
                limits = [
                    x for x in (first_byte if first else None, deadline and deadline - time.monotonic()) if x
                ]
                try:
                    event = (
                        await asyncio.wait_for(anext(events), min(limits)) if limits else await anext(events)
                    )
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    which = "first byte" if first and first_byte else "total"
                    yield Failed(
                        UPSTREAM_TIMEOUT,
                        f"{candidate.provider.name} gave no answer within the variant's {which} time limit",
                        retryable=first,
                    )
                    return
                first = False
                yield event
        finally:
            await events.aclose()

    def _note(self, candidate: Candidate, attempt: int, failure: Failed | None, seconds: float) -> None:
        self._trying = None
        self._attempts.append(
            {
                "provider": candidate.provider.name,
                "model": candidate.model_id,
                "fallback": candidate.fallback,
                "attempt": attempt,
                "status": "error" if failure else "success",
                "error_code": failure.code if failure else None,
                "error": failure.message if failure else None,
                "duration_ms": round(seconds * 1000, 3),
            }
        )

    def _serving(self, candidate: Candidate) -> None:
        """This candidate's answer is reaching the caller: the run is its run."""
        record = self.record
        record.provider = candidate.provider.name
        self._priced_as = candidate.model_id
        if candidate.version.id != record.version_id:  # a fallback with its own version answered
            _stamp_version(record, candidate.version)
            record.messages = candidate.messages

    _priced_as: str | None = None

    # ── usage and cost ───────────────────────────────────────────────────────

    def _estimate(self, output: str) -> Usage:
        prompt = sum(len(str(m.get("content") or "")) for m in self.record.messages or [])
        return Usage(
            input=math.ceil(prompt / CHARS_PER_TOKEN),
            output=math.ceil(len(output) / CHARS_PER_TOKEN),
            estimated=True,
        )

    def _account(self, usage: Usage) -> None:
        record = self.record
        record.input_tokens, record.cached_input_tokens = usage.input, usage.cached_input
        record.cache_write_input_tokens = usage.cache_write_input
        record.output_tokens, record.reasoning_tokens = usage.output, usage.reasoning
        record.usage_estimated = usage.estimated
        configured = self._priced_as or self._candidates[0].model_id
        # The model the upstream says answered (e.g. Azure's real model behind a deployment
        # name, or a dated snapshot) is priced first; then the model id the version names.
        priced = (record.model, configured) if record.model and record.model != configured else (configured,)
        override = next((self._overrides[m] for m in priced if m in self._overrides), None)  # wins
        for model_id in priced:
            record.cost, record.price_known = self._engine.prices.cost(model_id, usage, override)
            if record.price_known:
                break


def _stamp_version(record: RunRecord, version: Version) -> None:
    """The run's version: a saved one's id and number; an unsaved draft has neither."""
    record.version_id, record.version_number = (version.id, version.number) if version.saved else (None, None)


def _missing(usage: Usage | None, text: list[str], reasoning: list[str]) -> bool:
    """No usage, or all zeros for an answer that plainly had words: the upstream did not say."""
    return usage is None or (usage.input == 0 and usage.output == 0 and bool(text or reasoning))


async def _guarded(events: AsyncIterator[Event]) -> AsyncGenerator[Event, None]:
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
        self,
        catalog: CatalogStore,
        providers: Providers,
        writer: RunWriter,
        cache_ttl: float,
        credentials: CredentialStore,
        price_overrides: PriceOverrides,
        raw_override_urls: tuple[str, ...] = (),
        *,
        cache_entries: int = TtlCache.MAX_ENTRIES,
        cache_misses: int = TtlCache.MAX_MISSES,
    ) -> None:
        self.catalog = catalog
        self.raw_override_urls = raw_override_urls  # where a caller's raw_overrides.url may point
        self.providers = providers
        self.writer = writer
        self.breakers = CircuitBreakers()
        self.prices = PriceList(providers)
        # Callers name deployments, so unknown names get the small store for misses; a missing
        # credential is a workspace's setting, not a caller's choice: as many as there are entries.
        self.deployments: TtlCache[tuple[str, str], Deployment | None] = TtlCache(
            self._load_deployment, cache_ttl, max_entries=cache_entries, max_misses=cache_misses
        )
        self.credentials: TtlCache[tuple[str, str], Credential | None] = TtlCache(
            lambda key: credentials.get(*key), cache_ttl, max_entries=cache_entries, max_misses=cache_entries
        )
        self.overrides: TtlCache[str, dict[str, Price]] = TtlCache(
            price_overrides.all, cache_ttl, max_entries=cache_entries
        )

    async def start(self, request: InvokeRequest, snapshot: Deployment | None = None) -> Invocation:
        """Resolve and check everything; raises before any provider call if the request is bad.
        A refused request is still logged as a failed run. `snapshot` serves a deployment the
        catalog does not hold (the playground's, `deployments.standalone`): nothing is looked
        up, and the run names no deployment id or variant."""
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
            deployment = snapshot or await self.deployments.get(
                (request.caller.workspace_id, request.deployment)
            )
            if deployment is None:
                raise NotFound(f"no deployment named {request.deployment!r}")
            record.deployment_id = None if snapshot else deployment.id
            variant, version = deployment.serve(request.variant, request.end_user)
            record.variant = None if snapshot else variant
            _stamp_version(record, version)
            record.model = request.model or version.spec.model
            config = deployment.config(variant)
            candidates = await self._candidates(request, deployment, version, config)
            record.messages = candidates[0].messages
            record.provider = candidates[0].provider.name
            overrides = await self.overrides.get(request.caller.workspace_id)
        except PromptdeckError as exc:
            record.status, record.error_code, record.error_message = ERROR, exc.code, exc.message
            record.duration_ms = (time.perf_counter() - started) * 1000
            await self.writer.put(record)
            raise
        return Invocation(record, candidates, config, self, overrides, started)

    async def _candidates(
        self, request: InvokeRequest, deployment: Deployment, version: Version, config: VariantConfig
    ) -> list[Candidate]:
        """The variant's own model first, then each fallback that names a configured provider."""
        check_raw_overrides(request.raw_overrides, request.caller.scopes, self.raw_override_urls)
        if request.params and (problems := param_problems(request.params)):
            raise ValidationFailed("invalid parameters: " + "; ".join(problems), details=problems)
        candidates = [await self._candidate(request, version, request.model or version.spec.model, config, 0)]
        for position, fallback in enumerate(config.fallbacks, start=1):
            tuned = deployment.named_versions.get(fallback.version) if fallback.version else None
            try:
                candidates.append(
                    await self._candidate(request, tuned or version, fallback.model, config, position)
                )
            except PromptdeckError:
                continue  # a fallback that cannot be called here is skipped, not fatal
        return candidates

    async def _candidate(
        self, request: InvokeRequest, version: Version, model_id: str, config: VariantConfig, position: int
    ) -> Candidate:
        values = resolve_inputs(version.spec, request.inputs)
        if version.spec.template_syntax == JINJA2:  # in worker processes that are killed at the time limit
            rendered = await template_renders.render_messages(version.spec, values)
        else:
            rendered = render_messages(version.spec, values)
        messages: list[dict[str, Any]] = [{"role": m.role, "content": m.content} for m in rendered] + (
            request.messages or []
        )
        provider, model = self.providers.pick(model_id)
        credential = None
        if provider.credential_name is not None:
            credential = await self.credentials.get((request.caller.workspace_id, provider.credential_name))
        spec = version.spec
        call = ProviderCall(
            model,
            messages,
            {**spec.params, **(request.params or {})},
            stream=request.stream,
            api_key=credential.api_key if credential else None,
            base_url=credential.base_url if credential else None,
            connect_timeout=config.connect_timeout,
            tools=request.tools if request.tools is not None else spec.tools,
            tool_choice=request.tool_choice if request.tool_choice is not None else spec.tool_choice,
            response_format=request.response_format
            if request.response_format is not None
            else spec.response_format,
            raw_overrides=request.raw_overrides,
            keep_raw=request.keep_raw,
        )
        return Candidate(provider, call, model_id, version, messages, position, request.caller.workspace_id)

    async def payload(self, request: InvokeRequest) -> dict[str, Any]:
        """The exact body the variant's provider would receive, without calling it."""
        deployment = await self.deployments.get((request.caller.workspace_id, request.deployment))
        if deployment is None:
            raise NotFound(f"no deployment named {request.deployment!r}")
        _, version = deployment.resolve(request.variant)
        model_id = request.model or version.spec.model
        candidate = await self._candidate(request, version, model_id, VariantConfig(), 0)
        return candidate.provider.payload(replace(candidate.call, api_key=None))

    async def _load_deployment(self, key: tuple[str, str]) -> Deployment | None:
        """None for an unknown name, so a flood of bad names is answered from memory too."""
        try:
            return await self.catalog.load_deployment(*key)
        except NotFound:
            return None

    def forget_deployments(self) -> None:
        """Called after any catalog write, so the next call sees it."""
        self.deployments.invalidate()

    def forget_provider_settings(self) -> None:
        """Called after a credential or price override changes."""
        self.credentials.invalidate()
        self.overrides.invalidate()
