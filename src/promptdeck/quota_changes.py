"""Setting and deleting a rate limit or a budget, each recorded in the audit log with what it
limited before and after: the admin API (surfaces/admin_quotas.py) and the console's "Limits &
budgets" page (web/quotas_pages.py) make the same changes, and neither may import the other, so
they live here once."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from promptdeck.audit_trail import audit
from promptdeck.engine.auth import Caller
from promptdeck.store.quotas import QuotaStore

LIMIT_FIELDS = ("subject_kind", "subject", "requests_per_minute", "tokens_per_minute")
BUDGET_FIELDS = ("subject_kind", "subject", "period", "amount_usd")


def _quotas(request: Request) -> QuotaStore:
    store: QuotaStore = request.app.state.services.quotas
    return store


def audited(row: dict[str, Any] | None, fields: tuple[str, ...]) -> dict[str, Any] | None:
    """A limit or budget as the audit log records it: what it limits, not when it was stored."""
    return None if row is None else {name: row[name] for name in fields}


async def set_limit(
    request: Request,
    caller: Caller,
    subject_kind: str,
    subject: str,
    requests_per_minute: int | None,
    tokens_per_minute: int | None,
) -> dict[str, Any]:
    before, after = await _quotas(request).set_limit(
        caller.workspace_id, subject_kind, subject, requests_per_minute, tokens_per_minute
    )
    await audit(
        request,
        caller,
        "rate_limit.set",
        "rate_limit",
        after["id"],
        audited(before, LIMIT_FIELDS),
        audited(after, LIMIT_FIELDS),
    )
    return after


async def delete_limit(request: Request, caller: Caller, limit_id: str) -> dict[str, Any]:
    before = await _quotas(request).delete_limit(caller.workspace_id, limit_id)
    await audit(request, caller, "rate_limit.deleted", "rate_limit", limit_id, audited(before, LIMIT_FIELDS))
    return before


async def set_budget(
    request: Request, caller: Caller, subject_kind: str, subject: str, period: str, amount_usd: float
) -> dict[str, Any]:
    before, after = await _quotas(request).set_budget(
        caller.workspace_id, subject_kind, subject, period, amount_usd
    )
    await audit(
        request,
        caller,
        "budget.set",
        "budget",
        after["id"],
        audited(before, BUDGET_FIELDS),
        audited(after, BUDGET_FIELDS),
    )
    return after


async def delete_budget(request: Request, caller: Caller, budget_id: str) -> dict[str, Any]:
    before = await _quotas(request).delete_budget(caller.workspace_id, budget_id)
    await audit(request, caller, "budget.deleted", "budget", budget_id, audited(before, BUDGET_FIELDS))
    return before
