"""Every way a run-log page can be read (store/run_log_plan.py) gives the same runs in the same
order: driven by its rarest filter, walking a filter's time-ordered index, walking the sort's index.
A small log reaches each plan through DRIVER_CAP: at 1 nearly every filter is "common" (walks), at
10,000 every filter is rare (drives). The expected pages are computed here from the runs."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta
from typing import Any

import pytest

from promptdeck.domain.run_filters import RunFilters, check_sort, parse_filters
from promptdeck.domain.runs import ERROR, SUCCESS, RunRecord
from promptdeck.store import run_log_plan
from promptdeck.store.run_log_plan import PagePlan, plan_page
from tests.conftest import Deck
from tests.test_run_queries import BASE, SORTED_BY, ids, put, record

# filters as GET /api/runs takes them; each one reaches a different candidate driver
QUERIES: list[dict[str, Any]] = [
    {},
    {"meta": ["env:prod", "plan:pro"]},
    {"meta": ["env:staging", "score>0.5"]},
    {"meta": ["plan:free", "feature"]},
    {"meta": ["customer:c7"]},
    {"meta": ["score<0.3"], "deployment": "alpha"},
    {"user": "ann", "meta": ["env:prod"]},
    {"status": "error"},
    {"deployment": "beta", "since": (BASE + timedelta(hours=1)).isoformat()},
    {"since": (BASE + timedelta(minutes=20)).isoformat(), "until": (BASE + timedelta(hours=2)).isoformat()},
    {"meta": ["env:prod"], "until": (BASE + timedelta(minutes=90)).isoformat()},
]


def make_runs(deck: Deck) -> list[RunRecord]:
    pick = random.Random(7)
    made = []
    for i in range(90):
        metadata: dict[str, Any] = {"env": pick.choice(["prod", "prod", "staging"]), "customer": f"c{i % 30}"}
        if i % 3:
            metadata["plan"] = pick.choice(["free", "pro", "enterprise"])
        if i % 2:
            metadata["score"] = round(pick.random(), 2)
        if i % 4 == 0:
            metadata["feature"] = "chat"
        made.append(
            record(
                deck,
                deployment=pick.choice(["alpha", "beta"]),
                status=ERROR if i % 9 == 0 else SUCCESS,
                end_user=pick.choice(["ann", "bob", None]),
                metadata=metadata,
                duration_ms=float(pick.randrange(5)),  # ties: the id breaks them
                cost=None if i % 7 == 0 else pick.randrange(4) / 1000,
                input_tokens=pick.randrange(3),
                output_tokens=pick.randrange(3),
                created_at=BASE + timedelta(minutes=(i // 2) * 3),  # pairs share a time
            )
        )
    return put(deck, made)


def matches(run: RunRecord, filters: RunFilters) -> bool:
    meta = run.metadata or {}
    for c in filters.meta:
        value = meta.get(c.key)
        if c.key not in meta:
            return False
        if c.op == "eq" and value != c.text:
            return False
        if c.op in ("gt", "lt"):
            if not isinstance(value, float) or c.number is None:
                return False
            if (c.op == "gt" and not value > c.number) or (c.op == "lt" and not value < c.number):
                return False
    return (
        (filters.deployment is None or run.deployment == filters.deployment)
        and (filters.status is None or run.status == filters.status)
        and (filters.user is None or run.end_user == filters.user)
        and (filters.since is None or run.created_at >= filters.since)
        and (filters.until is None or run.created_at < filters.until)
    )


def filters_of(query: dict[str, Any]) -> RunFilters:
    return parse_filters(**query)


@pytest.mark.parametrize("cap", [1, 6, 10_000])
def test_every_plan_gives_the_same_pages(deck: Deck, cap: int, monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_runs(deck)
    monkeypatch.setattr(run_log_plan, "DRIVER_CAP", cap)  # the live server runs in this process
    with deck.client() as client:
        for query, sort, order in itertools.product(QUERIES, SORTED_BY, ("desc", "asc")):
            if order == "asc" and sort in ("cost", "tokens"):
                continue  # the ascending walk of the sort indexes is covered by time and latency
            wanted = [r for r in made if matches(r, filters_of(query))]
            wanted.sort(key=lambda r: (SORTED_BY[sort](r), r.id), reverse=order == "desc")
            got = ids(client, sort=sort, order=order, limit=7, **query)
            assert got == [r.id for r in wanted], (cap, query, sort, order)


def plan_of(deck: Deck, query: dict[str, Any], sort: str) -> PagePlan:
    checked, _ = check_sort(sort, "desc")

    async def go() -> PagePlan:
        async with deck.services.db.connect() as conn:
            return await plan_page(conn, deck.workspace_id, filters_of(query), checked)

    result: PagePlan = deck.live.call(go)
    return result


def test_plans_follow_the_counts(deck: Deck, monkeypatch: pytest.MonkeyPatch) -> None:
    """The matrix above reaches every plan: checked here on the same log."""
    make_runs(deck)
    monkeypatch.setattr(run_log_plan, "DRIVER_CAP", 6)
    rare = plan_of(deck, {"meta": ["env:prod", "customer:c7"]}, "time")
    assert rare.driver is not None and rare.driver.name == "meta customer" and not rare.walks
    assert rare.counts["meta env"] == 6 and rare.counts["meta customer"] < 6
    walk = plan_of(deck, {"meta": ["env:prod", "plan:pro"]}, "time")
    assert walk.walks and walk.driver is not None and walk.driver.meta is not None
    by_index = plan_of(deck, {"deployment": "alpha", "meta": ["env"]}, "time")
    assert by_index.walks and by_index.driver is not None and by_index.driver.name == "deployment"
    sorted_walk = plan_of(deck, {"meta": ["env:prod"]}, "latency")
    assert sorted_walk.walks and sorted_walk.driver is None
    user = plan_of(deck, {"user": "nobody"}, "cost")
    assert user.driver is not None and user.driver.name == "user" and user.counts == {"user": 0}
    window = plan_of(deck, {"since": (BASE + timedelta(hours=4)).isoformat()}, "tokens")
    assert window.driver is not None and window.driver.name == "time range" and not window.walks
