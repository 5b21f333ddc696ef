"""The quota store (rate limits and budgets: validation, set-again-changes, QuotasChanged after a
committed write, `load` for the governor) and budget spend read back from runs written by the
real run writer, for every subject kind and at a period's bounds; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.change_events import ChangeEvent, ChangeFeed, QuotasChanged
from promptdeck.domain.errors import NotFound, ValidationFailed
from promptdeck.domain.quotas import Budget, RateLimit, WorkspaceQuotas, period_bounds
from promptdeck.domain.runs import new_id, utcnow
from promptdeck.store.budget_spend import BudgetSpend
from promptdeck.store.quotas import QuotaStore
from promptdeck.store.tables import api_keys, deployments, prompts, workspaces
from tests.support.run_records import usage_run, write_runs

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def workspace_with(engine: AsyncEngine, key_id: str = "", deployment: str = "") -> str:
    """A workspace, with a key and a deployment of those ids / names when given."""
    workspace_id, now = new_id(), utcnow()
    async with engine.begin() as conn:
        await conn.execute(workspaces.insert().values(id=workspace_id, name="w", created_at=now))
        if key_id:
            await conn.execute(
                api_keys.insert().values(
                    id=key_id,
                    workspace_id=workspace_id,
                    name="k",
                    prefix="pd_x",
                    key_hash=new_id() + new_id(),
                    scopes="invoke",
                    created_at=now,
                )
            )
        if deployment:
            prompt_id = new_id()
            await conn.execute(
                prompts.insert().values(
                    id=prompt_id, workspace_id=workspace_id, slug="p", name="p", created_at=now
                )
            )
            await conn.execute(
                deployments.insert().values(
                    id=new_id(),
                    workspace_id=workspace_id,
                    name=deployment,
                    prompt_id=prompt_id,
                    default_variant="default",
                    created_at=now,
                )
            )
    return workspace_id


def recorded() -> tuple[ChangeFeed, list[ChangeEvent]]:
    feed, seen = ChangeFeed(), []
    feed.subscribe(seen.append)
    return feed, seen


async def test_limits_are_set_changed_listed_loaded_and_deleted(engine: AsyncEngine) -> None:
    key_id = new_id()
    workspace_id = await workspace_with(engine, key_id, "chat")
    feed, seen = recorded()
    store = QuotaStore(engine, feed)

    before, made = await store.set_limit(workspace_id, "key", f" {key_id} ", 10, None)
    assert before is None and made["subject"] == key_id and made["requests_per_minute"] == 10
    assert seen == [QuotasChanged(workspace_id)]
    before, changed = await store.set_limit(workspace_id, "key", key_id, None, 5000)
    assert before is not None and before["requests_per_minute"] == 10
    assert changed["id"] == made["id"] and changed["tokens_per_minute"] == 5000
    assert changed["requests_per_minute"] is None
    await store.set_limit(workspace_id, "workspace", "", 100, 100_000)
    await store.set_limit(workspace_id, "end_user", "", 3, None)
    await store.set_limit(workspace_id, "deployment", "chat", 7, None)
    assert len(seen) == 5

    listed = await store.list_limits(workspace_id)
    assert [(x["subject_kind"], x["subject"]) for x in listed] == [
        ("workspace", ""),
        ("key", key_id),
        ("deployment", "chat"),
        ("end_user", ""),
    ]
    loaded = await store.load(workspace_id)
    assert RateLimit(made["id"], "key", key_id, None, 5000) in loaded.limits
    assert len(loaded.limits) == 4 and loaded.budgets == ()
    assert await store.load(new_id()) == WorkspaceQuotas()

    gone = await store.delete_limit(workspace_id, made["id"])
    assert gone["subject"] == key_id and len(seen) == 6
    with pytest.raises(NotFound):
        await store.delete_limit(workspace_id, made["id"])
    other = await workspace_with(engine)
    with pytest.raises(NotFound):  # another workspace's limit is not there
        await store.delete_limit(other, listed[0]["id"])
    assert len(seen) == 6


async def test_budgets_are_one_per_subject_and_period(engine: AsyncEngine) -> None:
    workspace_id = await workspace_with(engine)
    feed, seen = recorded()
    store = QuotaStore(engine, feed)
    _, day = await store.set_budget(workspace_id, "workspace", "", "day", 5)
    _, month = await store.set_budget(workspace_id, "workspace", "", "month", 100.25)
    before, again = await store.set_budget(workspace_id, "workspace", "", "day", 0)
    assert before is not None and before["amount_usd"] == 5
    assert again["id"] == day["id"] and again["amount_usd"] == 0
    await store.set_budget(workspace_id, "end_user", "ann@example.com", "month", 0.000001)
    assert len(seen) == 4
    loaded = await store.load(workspace_id)
    assert Budget(month["id"], "workspace", "", "month", 100.25) in loaded.budgets
    assert Budget(day["id"], "workspace", "", "day", 0.0) in loaded.budgets
    assert [b["period"] for b in await store.list_budgets(workspace_id)] == ["day", "month", "month"]
    assert (await store.delete_budget(workspace_id, month["id"]))["amount_usd"] == 100.25
    assert len((await store.load(workspace_id)).budgets) == 2


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (("limit", "team", "", 1, None), "subject_kind"),
        (("limit", "workspace", "someone", 1, None), "subject"),
        (("limit", "key", "no-such-key", 1, None), "subject"),
        (("limit", "deployment", "no-such-deployment", 1, None), "subject"),
        (("limit", "end_user", "x" * 201, 1, None), "subject"),
        (("limit", "workspace", "", None, None), "requests_per_minute"),
        (("limit", "workspace", "", 0, None), "requests_per_minute"),
        (("limit", "workspace", "", 1, -5), "tokens_per_minute"),
        (("limit", "workspace", "", 1, 2**31), "tokens_per_minute"),
        (("limit", "workspace", "", True, None), "requests_per_minute"),
        (("budget", "workspace", "", "week", 1), "period"),
        (("budget", "workspace", "", "day", -1), "amount_usd"),
        (("budget", "workspace", "", "day", float("nan")), "amount_usd"),
        (("budget", "workspace", "", "day", float("inf")), "amount_usd"),
        (("budget", "workspace", "", "day", 0.0000001), "amount_usd"),
        (("budget", "workspace", "", "day", 2e9), "amount_usd"),
    ],
)
async def test_what_is_refused(engine: AsyncEngine, call: tuple[Any, ...], field: str) -> None:
    workspace_id = await workspace_with(engine)
    feed, seen = recorded()
    store = QuotaStore(engine, feed)
    what, *args = call
    with pytest.raises(ValidationFailed) as refused:
        if what == "limit":
            await store.set_limit(workspace_id, *args)
        else:
            await store.set_budget(workspace_id, args[0], args[1], args[2], args[3])
    assert refused.value.details[0]["loc"] == [field]
    assert seen == [] and await store.load(workspace_id) == WorkspaceQuotas()


async def test_a_key_of_another_workspace_is_no_subject(engine: AsyncEngine) -> None:
    key_id = new_id()
    await workspace_with(engine, key_id, "chat")
    mine = await workspace_with(engine)
    store = QuotaStore(engine)
    for kind, subject in (("key", key_id), ("deployment", "chat")):
        with pytest.raises(ValidationFailed, match="in this workspace"):
            await store.set_limit(mine, kind, subject, 1, None)


async def test_spend_of_each_subject_kind_within_the_period(engine: AsyncEngine) -> None:
    """Runs at the period's first instant count, runs at its end (the next period) do not;
    every kind reads its own runs and no other workspace's."""
    workspace_id, other = new_id(), new_id()
    start, end = period_bounds("day", datetime(2026, 3, 14, 15, 30, tzinfo=UTC))
    key_a, key_b = new_id(), new_id()

    def run(at: datetime, cost: float | None, **fields: Any) -> Any:
        return usage_run(workspace_id, at, cost=cost, **fields)

    records = [
        run(start, 1.0, api_key_id=key_a, deployment="alpha", end_user="ann"),
        run(start + timedelta(hours=5, minutes=59), 2.0, api_key_id=key_b, deployment="beta", end_user="bob"),
        run(end - timedelta(microseconds=1), 4.0, api_key_id=key_a, deployment="beta", end_user=None),
        run(
            start + timedelta(hours=1), None, api_key_id=key_a, deployment="alpha", end_user="ann"
        ),  # unpriced
        run(start - timedelta(microseconds=1), 100.0, api_key_id=key_a, deployment="alpha", end_user="ann"),
        run(end, 200.0, api_key_id=key_a, deployment="alpha", end_user="ann"),
        usage_run(other, start + timedelta(hours=2), cost=1000.0, api_key_id=key_a, end_user="ann"),
    ]
    await write_runs(engine, records)
    spend = BudgetSpend(engine)

    async def spent(kind: str, subject: str, bounds: tuple[datetime, datetime] = (start, end)) -> float:
        return await spend.spent(workspace_id, kind, subject, *bounds)

    assert await spent("workspace", "") == pytest.approx(7.0)
    assert await spent("key", key_a) == pytest.approx(5.0)
    assert await spent("key", key_b) == pytest.approx(2.0)
    assert await spent("deployment", "alpha") == pytest.approx(1.0)
    assert await spent("deployment", "beta") == pytest.approx(6.0)
    assert await spent("end_user", "ann") == pytest.approx(1.0)
    assert await spent("end_user", "bob") == pytest.approx(2.0)
    assert await spent("end_user", "nobody") == 0.0
    # The next day holds the run at `end`; a month holds them all but the other workspace's.
    assert await spent("workspace", "", (end, end + timedelta(days=1))) == pytest.approx(200.0)
    month = period_bounds("month", start)
    assert await spent("workspace", "", month) == pytest.approx(307.0)
    assert await spent("key", key_a, month) == pytest.approx(305.0)
    # Bounds off the hour are read from the runs themselves, and agree.
    off = (start + timedelta(minutes=30), end)
    assert await spent("workspace", "", off) == pytest.approx(6.0)
    assert await spent("end_user", "bob", off) == pytest.approx(2.0)
    assert await spent("deployment", "beta", off) == pytest.approx(6.0)

    assert await spend.largest(workspace_id, "key", start, end) == (key_a, pytest.approx(5.0))
    assert await spend.largest(workspace_id, "deployment", start, end) == ("beta", pytest.approx(6.0))
    assert await spend.largest(workspace_id, "end_user", start, end) == ("bob", pytest.approx(2.0))
    assert await spend.largest(new_id(), "end_user", start, end) is None
    with pytest.raises(ValueError, match="largest"):
        await spent("end_user", "")
