"""The one pipeline behind every dialect.

`Engine.start()` does everything that can fail before the first byte (resolve, validate,
render, pick providers) and raises a `PromptdeckError` for it; a refused request is still
logged. It returns an `Invocation` (engine/invocation.py), which owns the run from there
until the writer has it.
"""

from __future__ import annotations

import time
from dataclasses import field, replace
from typing import Any

from promptdeck.domain.content_parts import content_data, media_in, stored_messages
from promptdeck.domain.deployments import Deployment, Version
from promptdeck.domain.errors import NotFound, PromptdeckError, ValidationFailed
from promptdeck.domain.inputs import check_appended_media, render_messages, resolve_inputs
from promptdeck.domain.keys import check_deployment
from promptdeck.domain.media_capability import media_refusal, needs_bytes
from promptdeck.domain.media_sources import DEFAULT_POLICY, MediaPolicy, without_payloads
from promptdeck.domain.override_policy import check_raw_overrides
from promptdeck.domain.prompts import param_problems
from promptdeck.domain.quotas import CallSubjects
from promptdeck.domain.reliability import DEFAULT_CONFIG, VariantConfig
from promptdeck.domain.runs import ERROR, RunRecord
from promptdeck.domain.templating import JINJA2
from promptdeck.domain.trace_context import traceparent_trace_id
from promptdeck.domain.values import immutable
from promptdeck.engine import template_renders
from promptdeck.engine.auth import Caller
from promptdeck.engine.circuit import CircuitBreakers
from promptdeck.engine.invocation import Candidate, Invocation, prompt_chars, stamp_version
from promptdeck.engine.media_fetch import MediaFetcher
from promptdeck.engine.outbound_http import OutboundPolicy
from promptdeck.engine.pricing import Price, PriceList
from promptdeck.engine.quota_cost import DEFAULT_MAX_TOKENS, worst_case_cost
from promptdeck.engine.quota_governor import Governor, Hold
from promptdeck.engine.response_cache import ResponseCache
from promptdeck.engine.run_observers import RunObservers
from promptdeck.engine.ttl_cache import MISSING, TtlCache
from promptdeck.providers.base import ProviderCall, Providers
from promptdeck.store.credentials import Credential, CredentialStore
from promptdeck.store.deployments import DeploymentStore
from promptdeck.store.prices import PriceOverrides
from promptdeck.store.run_writer import RunWriter


@immutable
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
    # Read from the call's headers (`surfaces.http.call_headers`) or the dialect's metadata:
    session_id: str | None = None  # the caller's conversation or request (docs/operations.md)
    traceparent: str | None = None  # a W3C trace context header: the run's span joins that trace
    no_cache: bool = False  # `Cache-Control: no-cache`: ask the provider, not the response cache
    no_store: bool = False  # `Cache-Control: no-store`: and keep nothing of this call's answer


class Engine:
    def __init__(
        self,
        deployment_store: DeploymentStore,
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
        self.deployment_store = deployment_store
        self.raw_override_urls = raw_override_urls  # where a caller's raw_overrides.url may point
        self.providers = providers
        self.writer = writer
        self.breakers = CircuitBreakers()
        self.open_runs: set[Invocation] = set()  # started, not yet with the writer
        self.observers = RunObservers()  # metrics, traces, the response cache, webhooks
        self.response_cache: ResponseCache | None = None  # set by services; asked for `cache` variants
        self.media: MediaPolicy = DEFAULT_POLICY  # set by services: what image and document inputs may be
        # set by services: fetches what a provider takes only as bytes (engine/media_fetch.py)
        self.fetcher = MediaFetcher(OutboundPolicy(allow_private=False))
        self.prices = PriceList(providers)
        self.governor: Governor | None = None  # set by services: rate limits and budgets
        self.default_max_tokens = DEFAULT_MAX_TOKENS  # a budget's worst case when a call sets none
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
            inputs=without_payloads(request.inputs),  # a data: URL as its type, size and digest
            metadata=request.metadata,
            end_user=request.end_user,
            external_id=request.external_id,
            api_key_id=request.caller.key_id,
            session_id=request.session_id,
            trace_id=traceparent_trace_id(request.traceparent),  # the traces observer may set it
        )
        try:
            check_deployment(request.caller.deployments, request.deployment)  # a key's own list
            named = (request.caller.workspace_id, request.deployment)
            deployment = snapshot or self.deployments.cached(named)
            if deployment is MISSING:
                deployment = await self.deployments.get(named)
            if deployment is None:
                raise NotFound(f"no deployment named {request.deployment!r}")
            record.deployment_id = None if snapshot else deployment.id
            variant, version = deployment.serve(request.variant, request.end_user)
            record.variant = None if snapshot else variant
            stamp_version(record, version)
            record.model = request.model or version.spec.model
            config = deployment.config(variant)
            candidates = await self._candidates(request, deployment, version, config)
            record.messages = candidates[0].messages
            record.provider = candidates[0].provider.name
            overrides = self.overrides.cached(request.caller.workspace_id)
            if overrides is MISSING:
                overrides = await self.overrides.get(request.caller.workspace_id)
            hold = await self._admit(request, candidates, overrides) if self.governor is not None else None
        except PromptdeckError as exc:
            record.status, record.error_code, record.error_message = ERROR, exc.code, exc.message
            record.duration_ms = (time.perf_counter() - started) * 1000
            await self.record_run(record, request)
            raise
        invocation = Invocation(record, candidates, config, self, overrides, started, request)
        invocation.hold = hold
        self.open_runs.add(invocation)
        if config.cache is not None and self.response_cache is not None:
            try:
                await self.response_cache.attach(invocation, candidates[0], config.cache, request)
            except BaseException:  # cancelled while asking Redis: the run still ends, here
                await invocation.close()
                raise
        return invocation

    async def _admit(
        self, request: InvokeRequest, candidates: list[Candidate], overrides: dict[str, Price]
    ) -> Hold | None:
        """Rate limits and budgets, before any provider call: raises `RateLimited` or
        `BudgetExceeded`, so the refused call is logged as a run with that code."""
        assert self.governor is not None
        caller = request.caller
        subjects = CallSubjects(caller.workspace_id, caller.key_id, request.deployment, request.end_user)
        return await self.governor.admit(
            subjects, lambda: worst_case_cost(candidates, self.prices, overrides, self.default_max_tokens)
        )

    async def record_run(self, record: RunRecord, request: InvokeRequest) -> None:
        """The one place a run ends, whatever its ending: its observers see it, then the writer."""
        if self.observers:
            self.observers.run_ended(record, request)
        await self.writer.put(record)

    async def close_open_runs(self) -> None:
        """Record every run still open (a shutdown cut it short): none is lost."""
        for invocation in list(self.open_runs):
            await invocation.close()

    async def _candidates(
        self, request: InvokeRequest, deployment: Deployment, version: Version, config: VariantConfig
    ) -> list[Candidate]:
        """The variant's own model first, then each fallback that names a configured provider."""
        check_raw_overrides(request.raw_overrides, request.caller.scopes, self.raw_override_urls)
        check_appended_media(request.messages, self.media)  # their images, as inputs' are
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
        values = resolve_inputs(version.spec, request.inputs, self.media)
        if version.spec.template_syntax == JINJA2:  # in worker processes that are killed at the time limit
            rendered = await template_renders.render_messages(version.spec, values)
        else:
            rendered = render_messages(version.spec, values)
        messages: list[dict[str, Any]] = [
            {"role": m.role, "content": content_data(m.content)} for m in rendered
        ] + (request.messages or [])
        provider, model = self.providers.pick(model_id)
        kept = stored_messages(messages)  # what the run keeps: URLs as given, no data: URL whole
        if parts := media_in(messages):  # refused before the call when the model cannot take one
            media_refusal(provider.media_family, model_id, model, parts)
            if any(needs_bytes(provider.media_family, part) for part in parts):  # only then: I/O
                messages = await self.fetcher.inline(provider.media_family, messages, request.inputs)
        credential = None
        if provider.credential_name is not None:
            named = (request.caller.workspace_id, provider.credential_name)
            found = self.credentials.cached(named)
            credential = await self.credentials.get(named) if found is MISSING else found
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
        workspace_id = request.caller.workspace_id
        return Candidate(provider, call, model_id, version, kept, position, workspace_id, prompt_chars(kept))

    async def payload(self, request: InvokeRequest) -> dict[str, Any]:
        """The exact body the variant's provider would receive, without calling it."""
        check_deployment(request.caller.deployments, request.deployment)
        deployment = await self.deployments.get((request.caller.workspace_id, request.deployment))
        if deployment is None:
            raise NotFound(f"no deployment named {request.deployment!r}")
        _, version = deployment.resolve(request.variant)
        model_id = request.model or version.spec.model
        candidate = await self._candidate(request, version, model_id, DEFAULT_CONFIG, 0)
        return candidate.provider.payload(replace(candidate.call, api_key=None))

    async def _load_deployment(self, key: tuple[str, str]) -> Deployment | None:
        """None for an unknown name, so a flood of bad names is answered from memory too."""
        try:
            return await self.deployment_store.load_deployment(*key)
        except NotFound:
            return None

    def forget_deployments(self) -> None:
        """On a `CatalogChanged` event (services.subscribe_caches), so the next call sees the write."""
        self.deployments.invalidate()

    def forget_provider_settings(self) -> None:
        """On a `ProviderSettingsChanged` event: a credential or a price override changed."""
        self.credentials.invalidate()
        self.overrides.invalidate()
