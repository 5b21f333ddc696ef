"""Everything a running server holds, built once and shared by every surface."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.config import Settings
from promptdeck.domain.change_events import (
    AccessChanged,
    CatalogChanged,
    ChangeEvent,
    ChangeFeed,
    ChangesMissed,
    ProviderSettingsChanged,
    QuotasChanged,
)
from promptdeck.domain.errors import NotFound
from promptdeck.domain.media_sources import MediaPolicy
from promptdeck.domain.upstream_urls import base_urls
from promptdeck.engine import template_renders
from promptdeck.engine.auth import KeyCheck
from promptdeck.engine.budget_status import BudgetStatus
from promptdeck.engine.change_bridge import ChangeBridge
from promptdeck.engine.evaluations import EvaluationRunner
from promptdeck.engine.invoke import Engine
from promptdeck.engine.local_change_bus import LocalChangeBus
from promptdeck.engine.media_fetch import MediaFetcher
from promptdeck.engine.metrics_registry import Metrics
from promptdeck.engine.outbound_http import OutboundPolicy
from promptdeck.engine.quota_setup import install_quotas
from promptdeck.engine.release_check import ReleaseCheck
from promptdeck.engine.release_gates import ReleaseGates
from promptdeck.engine.response_cache import ResponseCache
from promptdeck.engine.run_traces import RunTraces
from promptdeck.engine.vellum_state import VellumState
from promptdeck.engine.webhooks import Webhooks
from promptdeck.providers.base import Providers
from promptdeck.providers.registry import build_providers
from promptdeck.store.access import AccessStore
from promptdeck.store.audit_log import AuditLog
from promptdeck.store.budget_spend import BudgetSpend
from promptdeck.store.catalog import CatalogStore
from promptdeck.store.console_members import MemberStore
from promptdeck.store.console_sessions import SessionStore
from promptdeck.store.credentials import CredentialStore, load_secret_key
from promptdeck.store.database import create_engine, sqlite_file
from promptdeck.store.datasets import DatasetStore
from promptdeck.store.end_users import EndUsers
from promptdeck.store.evaluations import EvaluationStore
from promptdeck.store.feedback import FeedbackStore
from promptdeck.store.prices import PriceOverrides
from promptdeck.store.quotas import QuotaStore
from promptdeck.store.retention import PRUNE_EVERY_SECONDS, RetentionStore
from promptdeck.store.run_log import RunLog, run_dict
from promptdeck.store.run_sessions import RunSessions
from promptdeck.store.run_writer import RunWriter
from promptdeck.store.usage_report import UsageReport
from promptdeck.store.wal_checkpoints import WalCheckpointer
from promptdeck.store.webhook_deliveries import WebhookDeliveries
from promptdeck.store.webhook_endpoints import WebhookEndpoints
from promptdeck.store.workspaces import WorkspaceStore

log = logging.getLogger("promptdeck.retention")


@dataclass
class Services:
    settings: Settings
    db: AsyncEngine
    access: AccessStore
    catalog: CatalogStore
    run_log: RunLog
    writer: RunWriter
    keys: KeyCheck
    providers: Providers
    engine: Engine
    credentials: CredentialStore
    prices: PriceOverrides
    feedback: FeedbackStore
    retention: RetentionStore
    members: MemberStore
    console_sessions: SessionStore
    usage: UsageReport
    end_users: EndUsers
    vellum: VellumState  # the Vellum dialect's deployment ids and external-id claims
    changes: ChangeFeed  # every store write the caches below depend on is published here
    webhooks: Webhooks  # endpoints, and the dispatcher the change feed's facts go to
    checkpointer: WalCheckpointer | None = None  # SQLite only
    bridge: ChangeBridge | None = None  # the change feed across replicas, with PROMPTDECK_REDIS_URL
    worker_bus: LocalChangeBus | None = None  # across `serve --workers N`'s processes, without Redis
    metrics: Metrics | None = None  # /metrics, unless PROMPTDECK_METRICS=off
    traces: RunTraces | None = None  # OpenTelemetry spans, when the OTEL_* variables ask for them
    _pruner: asyncio.Task[None] | None = None
    evaluations: EvaluationRunner = field(init=False)  # evaluation runs in the background
    release_gates: ReleaseGates = field(init=False)  # the release check's evaluation gates
    releases: ReleaseCheck = field(init=False)  # every change of what a variant serves goes through it

    def __post_init__(self) -> None:
        stores = EvaluationStore(self.db), DatasetStore(self.db)
        self.evaluations = EvaluationRunner(self.engine, *stores, self.catalog)
        self.release_gates = ReleaseGates(self.evaluations)
        self.releases = ReleaseCheck(self.catalog, self.release_gates)

    @classmethod
    def build(cls, settings: Settings, worker_bus: Path | None = None) -> Services:
        """`worker_bus`: the directory where `serve --workers N`'s workers meet (serving_workers.py)."""
        db = create_engine(settings.database_url)
        changes = ChangeFeed()
        access = AccessStore(db, changes)
        catalog = CatalogStore(db, changes)
        keys = KeyCheck(
            access,
            settings.cache_ttl_seconds,
            max_entries=settings.cache_max_entries,
            max_misses=settings.cache_max_misses,
        )

        async def record_key_use() -> None:
            await access.record_last_used(keys.take_last_used())

        metrics = Metrics(settings.metrics_label_sets) if settings.metrics else None
        writer = RunWriter(
            db,
            batch_size=settings.writer_batch_size,
            flush_seconds=settings.writer_flush_seconds,
            queue_size=settings.writer_queue_size,
            after_batch=record_key_use,
            batch_written=metrics.batch_written if metrics is not None else None,
        )
        providers = build_providers(settings)
        secret_key = load_secret_key(settings.secret_key, settings.data_dir)
        credentials = CredentialStore(db, secret_key, changes)
        webhooks = Webhooks(
            WebhookEndpoints(db, secret_key),
            WebhookDeliveries(db),
            OutboundPolicy(settings.webhooks_allow_private),
        )
        changes.subscribe(webhooks.dispatcher.announce, local_only=True)  # once per write, not per replica
        prices = PriceOverrides(db, changes)
        feedback = FeedbackStore(db, writer.pending_run)
        engine = Engine(
            catalog.deployments,
            providers,
            writer,
            settings.cache_ttl_seconds,
            credentials,
            prices,
            raw_override_urls=base_urls(settings.raw_override_urls),
            cache_entries=settings.cache_max_entries,
            cache_misses=settings.cache_max_misses,
        )
        engine.response_cache = ResponseCache.build(settings.redis_url, settings.response_cache_mb)
        engine.media = MediaPolicy.from_settings(
            settings.media_types_image, settings.media_types_document, settings.media_max_bytes
        )
        engine.fetcher = MediaFetcher(OutboundPolicy(False), engine.media, settings.media_fetch_timeout)
        install_quotas(engine, settings, db)  # rate limits and budgets (docs/governance.md)
        vellum = VellumState(catalog.deployments, writer, feedback, settings.cache_ttl_seconds)
        subscribe_caches(changes, engine, vellum, keys)
        if metrics is not None:
            metrics.watch(writer, engine.breakers, tuple(providers.names))
            engine.observers.add(metrics.runs)
        traces = RunTraces.from_environment(os.environ, content=settings.trace_content)
        if traces is not None:
            engine.observers.add(traces)
        return cls(
            settings,
            db,
            access,
            catalog,
            RunLog(db),
            writer,
            keys,
            providers,
            engine,
            credentials,
            prices,
            feedback,
            RetentionStore(db),
            members=MemberStore(db),
            console_sessions=SessionStore(db),
            usage=UsageReport(db),
            end_users=EndUsers(db),
            vellum=vellum,
            changes=changes,
            webhooks=webhooks,
            checkpointer=WalCheckpointer(path) if (path := sqlite_file(settings.database_url)) else None,
            metrics=metrics,
            traces=traces,
            bridge=ChangeBridge(changes, settings.redis_url) if settings.redis_url else None,
            worker_bus=LocalChangeBus(changes, worker_bus) if worker_bus and not settings.redis_url else None,
        )

    @property
    def audit(self) -> AuditLog:
        """The audit log of admin actions (no state of its own: built on the database)."""
        return AuditLog(self.db)

    @property
    def workspaces(self) -> WorkspaceStore:
        """The instance's workspaces (no state of its own: built on the database and the feed)."""
        return WorkspaceStore(self.db, self.changes)

    @property
    def quotas(self) -> QuotaStore:
        """Rate limits and budgets (no state of its own: built on the database and the feed)."""
        return QuotaStore(self.db, self.changes)

    @property
    def budget_status(self) -> BudgetStatus:
        """Each budget's spend this period, for the API and the console."""
        return BudgetStatus(self.quotas, BudgetSpend(self.db), self.engine.governor)

    @property
    def datasets(self) -> DatasetStore:
        """Prompts' datasets of test cases (no state of its own: built on the database)."""
        return DatasetStore(self.db)

    @property
    def run_sessions(self) -> RunSessions:
        """Sessions of runs read together (no state of its own: built on the run log)."""
        return RunSessions(self.db, self.run_log)

    async def start(self) -> None:
        self.writer.start()
        self.webhooks.dispatcher.start()
        if self.bridge is not None:
            await self.bridge.start()
        if self.worker_bus is not None:
            await self.worker_bus.start()
        if self.metrics is not None:
            self.metrics.start()
        if self.checkpointer is not None:
            self.checkpointer.start()
        self._pruner = asyncio.create_task(self._prune_forever(), name="run-pruner")
        await self.evaluations.recover()

    async def _prune_forever(self, every: float = PRUNE_EVERY_SECONDS) -> None:
        """Apply the workspaces' retention periods at start, then hourly."""
        while True:
            try:
                await self.retention.prune()
                await self.console_sessions.end_expired()
            except Exception:
                log.exception("removing old runs or expired sessions failed; trying again in %.0f s", every)
            await asyncio.sleep(every)

    async def stop(self) -> None:
        """Drain the run writer first: no run is lost on a graceful shutdown."""
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None
        await self.evaluations.stop()  # its cancelled calls' runs are closed just below
        await self.engine.close_open_runs()
        if self.traces is not None:
            await self.traces.shutdown()  # after the last run: its spans are exported
        if self.engine.response_cache is not None:
            await self.engine.response_cache.aclose()  # after the last run: its store finishes
        if self.engine.governor is not None:
            await self.engine.governor.aclose()  # after the last run: its settlements are sent
        await self.writer.stop()
        await self.webhooks.dispatcher.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        if self.checkpointer is not None:
            await self.checkpointer.stop()
        await self.access.record_last_used(self.keys.take_last_used())
        if self.bridge is not None:
            await self.bridge.stop()  # after the last write: its event reaches the other replicas
        if self.worker_bus is not None:
            await self.worker_bus.stop()  # after the last write, likewise
        await self.providers.aclose()
        await template_renders.close_pool()
        await self.db.dispose()

    async def find_run(self, workspace_id: str, run_id: str) -> dict[str, Any]:
        """A run by id or request id, including one still waiting for the writer, with the
        feedback given on it. An id may also be written as a UUID (Vellum's execution ids)."""
        if len(run_id) == 36:
            with contextlib.suppress(ValueError):
                run_id = uuid.UUID(run_id).hex
        record = self.writer.pending_run_by_request_id(run_id) or self.writer.pending_run(run_id)
        if record is not None and record.workspace_id == workspace_id:
            run = run_dict(record)
        else:
            run = await self.run_log.get(workspace_id, run_id)
        run["feedback"] = await self.feedback.for_run(workspace_id, run["id"])
        return run

    # Changes the admin API and the console's settings both make (one implementation).

    async def list_providers(self, workspace_id: str) -> list[dict[str, Any]]:
        """The configured providers, each with its stored credential's details (never the secret)."""
        stored = {c["provider"]: c for c in await self.credentials.list(workspace_id)}
        return [{"name": name, "credential": stored.get(name)} for name in self.providers.names]

    async def store_credential(
        self, workspace_id: str, provider: str, api_key: str, base_url: str | None
    ) -> dict[str, Any]:
        if provider not in self.providers.credential_names:
            raise NotFound(
                f"no provider {provider!r} takes credentials "
                f"(credentials: {', '.join(self.providers.credential_names)})"
            )
        return await self.credentials.put(workspace_id, provider, api_key, base_url)

    async def delete_credential(self, workspace_id: str, provider: str) -> None:
        await self.credentials.delete(workspace_id, provider)


def subscribe_caches(changes: ChangeFeed, engine: Engine, vellum: VellumState, keys: KeyCheck) -> None:
    """The caches a write makes stale, subscribed to the change feed: the engine's resolved
    deployments and Vellum's deployment ids on a catalog change, the engine's credentials and
    price overrides on a provider settings change, the API keys on an access change; all of
    them when other replicas' changes may have been missed."""

    def forget(event: ChangeEvent) -> None:
        if isinstance(event, CatalogChanged):
            engine.forget_deployments()
            vellum.names.invalidate(event.workspace_id)
        elif isinstance(event, ProviderSettingsChanged):
            engine.forget_provider_settings()
        elif isinstance(event, AccessChanged):
            keys.forget()
        elif isinstance(event, QuotasChanged):
            if engine.governor is not None:
                engine.governor.forget(event.workspace_id)
        elif isinstance(event, ChangesMissed):  # other replicas' changes may have been missed
            engine.forget_deployments()
            vellum.names.invalidate()
            engine.forget_provider_settings()
            keys.forget()
            if engine.governor is not None:
                engine.governor.forget()

    changes.subscribe(forget)
