"""Each budget of a workspace in its current period: spent, reserved by calls in flight, and
what remains; and the workspace's own spend today and this month, budgets or not. The admin
API (`GET /api/budgets`) and the console's "Limits & budgets" page both show this.

Spent is the run log's (store/budget_spend.py) or, when higher, the governor's counter: the
counter already holds calls the run writer has not written yet. Reserved is the governor's
(with Redis: every replica's; in process: this one's). A budget of "each" key, deployment or end
user is shown for the subject nearest to it: the one that spent most this period.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from promptdeck.domain.quotas import EACH, PERIODS, Budget, period_bounds
from promptdeck.engine.quota_governor import Governor
from promptdeck.store.budget_spend import BudgetSpend
from promptdeck.store.quotas import QuotaStore


class BudgetStatus:
    def __init__(self, store: QuotaStore, spend: BudgetSpend, governor: Governor | None) -> None:
        self.store = store
        self.spend = spend
        self.governor = governor

    async def report(self, workspace_id: str, now: datetime | None = None) -> dict[str, Any]:
        """`{"data": [budget + its period's spend], "workspace": {"day": ..., "month": ...}}`."""
        now = now or datetime.now(UTC)
        budgets = [
            await self.of_budget(workspace_id, b, now) for b in await self.store.list_budgets(workspace_id)
        ]
        spent = {}
        for period in PERIODS:
            start, end = period_bounds(period, now)
            used = await self.spend.spent(workspace_id, "workspace", EACH, start, end)
            spent[period] = {"period_start": start, "period_end": end, "spent_usd": used}
        return {"data": budgets, "workspace": spent}

    async def of_budget(self, workspace_id: str, budget: dict[str, Any], now: datetime) -> dict[str, Any]:
        start, end = period_bounds(budget["period"], now)
        kind, subject = budget["subject_kind"], budget["subject"]
        shown: str | None = subject
        if kind != "workspace" and subject == EACH:
            largest = await self.spend.largest(workspace_id, kind, start, end)
            shown, spent = largest if largest is not None else (None, 0.0)
        else:
            spent = await self.spend.spent(workspace_id, kind, subject, start, end)
        reserved = 0.0
        if self.governor is not None and shown is not None:
            held = await self.governor.spend(
                workspace_id,
                Budget(budget["id"], kind, subject, budget["period"], budget["amount_usd"]),
                shown,
            )
            if held is not None:
                spent, reserved = max(spent, held.settled_usd), held.reserved_usd
        return budget | {
            "period_start": start,
            "period_end": end,
            "shown_subject": shown,  # the subject the figures are of ("" for the workspace)
            "spent_usd": round(spent, 6),
            "reserved_usd": round(reserved, 6),
            "remaining_usd": round(max(0.0, budget["amount_usd"] - spent - reserved), 6),
        }
