"""Rate limits and budgets as a server runs them: the counting backend its settings choose,
the workspaces' quotas and spend from the database, and the fail policies."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.config import Settings
from promptdeck.engine.invoke import Engine
from promptdeck.engine.quota_backend import QuotaBackend
from promptdeck.engine.quota_governor import Governor
from promptdeck.engine.quota_memory import MemoryQuotas
from promptdeck.engine.quota_redis import RedisQuotas
from promptdeck.store.budget_spend import BudgetSpend
from promptdeck.store.quotas import QuotaStore


def quota_backend(settings: Settings) -> QuotaBackend:
    """In this process (one replica) unless replicas share Redis (engine/quota_redis.py)."""
    if settings.redis_url:
        return RedisQuotas(settings.redis_url)
    return MemoryQuotas()


def install_quotas(engine: Engine, settings: Settings, db: AsyncEngine) -> Governor:
    """Give the engine its governor; every invoke is admitted and settled through it."""
    backend = quota_backend(settings)
    governor = Governor(
        backend,
        QuotaStore(db),
        BudgetSpend(db),
        settings.cache_ttl_seconds,
        limits_on_failure=settings.limits_on_store_failure,
        budgets_on_failure=settings.budgets_on_store_failure,
        cache_entries=settings.cache_max_entries,
        settle_later=isinstance(backend, RedisQuotas),  # in process, settling inline costs µs
    )
    engine.governor = governor
    engine.default_max_tokens = settings.budget_default_max_tokens
    return governor
