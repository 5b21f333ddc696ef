"""A workspace's rate limits and budgets: listed, set (one per subject, so setting again
changes it), deleted, and loaded whole for the engine's governor (docs/governance.md).

Every committed change publishes `QuotasChanged`: the governor caches a workspace's quotas and
drops them on that event, here and (over Redis) on every replica.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptdeck.domain.change_events import ChangeFeed, QuotasChanged
from promptdeck.domain.errors import NotFound, ValidationFailed
from promptdeck.domain.quotas import EACH, PERIODS, SUBJECT_KINDS, Budget, RateLimit, WorkspaceQuotas
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.store.tables import api_keys, budgets, deployments, rate_limits

PER_MINUTE_MAX = 2**31 - 1  # the columns are 32-bit integers
AMOUNT_MAX_USD = 1_000_000_000
AMOUNT_PLACES = 6  # a millionth of a dollar: finer than any price a call is charged
END_USER_MAX = 200  # as long as a run's end user can be
LIMIT_FIELDS = ("requests_per_minute", "tokens_per_minute")


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details=[{"loc": [field], "msg": message}])


def checked_rate(field: str, value: int | None) -> int | None:
    """A per-minute figure: a positive whole number, or None (not limited)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= PER_MINUTE_MAX:
        raise _invalid(field, f"{field} must be a whole number from 1 to {PER_MINUTE_MAX}, or null")
    return value


def checked_amount(amount_usd: float) -> float:
    """A budget in USD: finite, from 0 to AMOUNT_MAX_USD, at most AMOUNT_PLACES decimals. A
    budget of 0 admits only zero-cost calls."""
    if (
        isinstance(amount_usd, bool)
        or not isinstance(amount_usd, int | float)
        or not math.isfinite(amount_usd)
    ):
        raise _invalid("amount_usd", "amount_usd must be a number of US dollars")
    if not 0 <= amount_usd <= AMOUNT_MAX_USD:
        raise _invalid("amount_usd", f"amount_usd must be from 0 to {AMOUNT_MAX_USD:,}")
    exponent = Decimal(str(amount_usd)).normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > AMOUNT_PLACES:
        raise _invalid("amount_usd", f"amount_usd takes at most {AMOUNT_PLACES} decimal places")
    return float(amount_usd)


def checked_period(period: str) -> str:
    if period not in PERIODS:
        raise _invalid("period", f"period must be one of {', '.join(PERIODS)}; got {period!r}")
    return period


async def checked_subject(conn: AsyncConnection, workspace_id: str, kind: str, subject: str) -> str:
    """The subject, stripped: "" for the workspace (and for each key, deployment or end user),
    else a key id or a deployment of this workspace, or an end user's name."""
    if kind not in SUBJECT_KINDS:
        raise _invalid(
            "subject_kind", f"subject_kind must be one of {', '.join(SUBJECT_KINDS)}; got {kind!r}"
        )
    subject = subject.strip()
    if subject == EACH:
        return subject
    if kind == "workspace":
        raise _invalid("subject", "a workspace limit or budget has no subject (leave it empty)")
    if kind == "key":
        table, column = api_keys, api_keys.c.id
    elif kind == "deployment":
        table, column = deployments, deployments.c.name
    else:
        if len(subject) > END_USER_MAX:
            raise _invalid("subject", f"an end user is at most {END_USER_MAX} characters")
        return subject
    found = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(table)
        .where(table.c.workspace_id == workspace_id, column == subject)
    )
    if not found:
        raise _invalid("subject", f"no {kind} {subject!r} in this workspace")
    return subject


def limit_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "subject_kind": row.subject_kind,
        "subject": row.subject,
        "requests_per_minute": row.requests_per_minute,
        "tokens_per_minute": row.tokens_per_minute,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def budget_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "subject_kind": row.subject_kind,
        "subject": row.subject,
        "period": row.period,
        "amount_usd": row.amount_usd,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


class QuotaStore:
    """Rate limits and budgets, one row per subject (per subject and period for budgets)."""

    def __init__(self, engine: AsyncEngine, changes: ChangeFeed | None = None) -> None:
        self.engine = engine
        self.changes = changes or ChangeFeed()

    async def list_limits(self, workspace_id: str) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(rate_limits)
                .where(rate_limits.c.workspace_id == workspace_id)
                .order_by(_case(rate_limits.c.subject_kind), rate_limits.c.subject)
            )
            return [limit_dict(r) for r in rows]

    async def list_budgets(self, workspace_id: str) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(budgets)
                .where(budgets.c.workspace_id == workspace_id)
                .order_by(_case(budgets.c.subject_kind), budgets.c.subject, budgets.c.period)
            )
            return [budget_dict(r) for r in rows]

    async def set_limit(
        self,
        workspace_id: str,
        subject_kind: str,
        subject: str,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Set the subject's limit (made, or changed if it has one): (before, after)."""
        values = {
            "requests_per_minute": checked_rate("requests_per_minute", requests_per_minute),
            "tokens_per_minute": checked_rate("tokens_per_minute", tokens_per_minute),
        }
        if values["requests_per_minute"] is None and values["tokens_per_minute"] is None:
            raise _invalid("requests_per_minute", "set requests_per_minute, tokens_per_minute or both")
        return await self._upsert(workspace_id, rate_limits, subject_kind, subject, {}, values, limit_dict)

    async def set_budget(
        self, workspace_id: str, subject_kind: str, subject: str, period: str, amount_usd: float
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Set the subject's budget for the period (made, or changed): (before, after)."""
        key = {"period": checked_period(period)}
        values = {"amount_usd": checked_amount(amount_usd)}
        return await self._upsert(workspace_id, budgets, subject_kind, subject, key, values, budget_dict)

    async def delete_limit(self, workspace_id: str, limit_id: str) -> dict[str, Any]:
        """Delete a limit; the limit it was."""
        return await self._delete(workspace_id, rate_limits, limit_id, limit_dict, "rate limit")

    async def delete_budget(self, workspace_id: str, budget_id: str) -> dict[str, Any]:
        """Delete a budget; the budget it was."""
        return await self._delete(workspace_id, budgets, budget_id, budget_dict, "budget")

    async def load(self, workspace_id: str) -> WorkspaceQuotas:
        """Everything the workspace limits, for the governor (which caches it until QuotasChanged)."""
        async with self.engine.connect() as conn:
            limits = await conn.execute(
                sa.select(rate_limits).where(rate_limits.c.workspace_id == workspace_id)
            )
            spends = await conn.execute(sa.select(budgets).where(budgets.c.workspace_id == workspace_id))
            return WorkspaceQuotas(
                tuple(
                    RateLimit(r.id, r.subject_kind, r.subject, r.requests_per_minute, r.tokens_per_minute)
                    for r in sorted(limits, key=lambda r: (r.subject_kind, r.subject))
                ),
                tuple(
                    Budget(r.id, r.subject_kind, r.subject, r.period, r.amount_usd)
                    for r in sorted(spends, key=lambda r: (r.subject_kind, r.subject, r.period))
                ),
            )

    async def _upsert(
        self,
        workspace_id: str,
        table: sa.Table,
        subject_kind: str,
        subject: str,
        key: dict[str, Any],
        values: dict[str, Any],
        as_dict: Any,
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Change the row of (workspace, kind, subject, *key), or insert it; a concurrent insert
        of the same row (the unique constraint) is answered by changing it instead."""
        for attempt in (1, 2):
            try:
                async with self.engine.begin() as conn:
                    subject = await checked_subject(conn, workspace_id, subject_kind, subject)
                    where = [
                        table.c.workspace_id == workspace_id,
                        table.c.subject_kind == subject_kind,
                        table.c.subject == subject,
                        *(table.c[name] == value for name, value in key.items()),
                    ]
                    held = (await conn.execute(sa.select(table).where(*where))).first()
                    now = utcnow()
                    if held is None:
                        row_id = new_id()
                        await conn.execute(
                            table.insert().values(
                                id=row_id,
                                workspace_id=workspace_id,
                                subject_kind=subject_kind,
                                subject=subject,
                                created_at=now,
                                updated_at=now,
                                **key,
                                **values,
                            )
                        )
                    else:
                        row_id = held.id
                        await conn.execute(
                            table.update().where(table.c.id == row_id).values(updated_at=now, **values)
                        )
                    after = (await conn.execute(sa.select(table).where(table.c.id == row_id))).one()
            except IntegrityError:
                if attempt == 2:
                    raise
                continue
            self.changes.publish(QuotasChanged(workspace_id))
            return (None if held is None else as_dict(held)), as_dict(after)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _delete(
        self, workspace_id: str, table: sa.Table, row_id: str, as_dict: Any, what: str
    ) -> dict[str, Any]:
        where = (table.c.workspace_id == workspace_id) & (table.c.id == row_id)
        async with self.engine.begin() as conn:
            held = (await conn.execute(sa.select(table).where(where))).first()
            if held is None:
                raise NotFound(f"no {what} {row_id!r}")
            await conn.execute(table.delete().where(where))
        self.changes.publish(QuotasChanged(workspace_id))
        return dict(as_dict(held))


def _case(column: sa.Column[Any]) -> sa.Case[Any]:
    """Subjects in SUBJECT_KINDS order: the workspace first, end users last."""
    return sa.case({kind: i for i, kind in enumerate(SUBJECT_KINDS)}, value=column, else_=len(SUBJECT_KINDS))
