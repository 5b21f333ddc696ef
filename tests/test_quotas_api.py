"""The admin API's rate limits and budgets against a live server: scopes, validation in the
admin error shape, set-again-changes, delete, the audit trail, and each budget's spend this
period from runs the server's own run writer wrote, with what calls in flight hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from promptdeck.domain.quotas import CallSubjects, period_bounds
from tests.conftest import Deck
from tests.support.run_records import usage_run


def created_key(deck: Deck, *scopes: str) -> dict[str, Any]:
    with deck.client() as admin:
        response = admin.post("/api/keys", json={"name": "+".join(scopes), "scopes": list(scopes)})
        assert response.status_code == 201, response.text
        return dict(response.json())


def write_run(deck: Deck, at: datetime, cost: float, **fields: Any) -> None:
    """A priced run, through the server's own run writer."""
    record = usage_run(deck.workspace_id, at, cost=cost, deployment="summarize", **fields)

    async def put() -> None:
        await deck.services.writer.put(record)

    deck.live.call(put)
    deck.flush()


def audit_actions(client: httpx.Client, action: str) -> list[dict[str, Any]]:
    response = client.get("/api/audit", params={"action": action})
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def test_limits_set_changed_listed_and_deleted_by_scope(deck: Deck) -> None:
    reader, invoker = created_key(deck, "read"), created_key(deck, "invoke")
    with (
        deck.client() as admin,
        deck.client(reader["api_key"]) as read,
        deck.client(invoker["api_key"]) as invoke,
    ):
        body = {"subject_kind": "key", "subject": invoker["id"], "requests_per_minute": 10}
        made = admin.put("/api/limits", json=body)
        assert made.status_code == 200, made.text
        limit = made.json()
        assert limit["requests_per_minute"] == 10 and limit["tokens_per_minute"] is None

        changed = admin.put(
            "/api/limits", json=body | {"requests_per_minute": None, "tokens_per_minute": 900}
        )
        assert changed.json()["id"] == limit["id"] and changed.json()["tokens_per_minute"] == 900
        admin.put(
            "/api/limits", json={"subject_kind": "workspace", "requests_per_minute": 100}
        ).raise_for_status()
        admin.put("/api/limits", json={"subject_kind": "end_user", "tokens_per_minute": 5}).raise_for_status()
        admin.put(
            "/api/limits",
            json={"subject_kind": "deployment", "subject": "summarize", "requests_per_minute": 2},
        ).raise_for_status()

        listed = read.get("/api/limits")
        assert listed.status_code == 200
        assert [(x["subject_kind"], x["subject"]) for x in listed.json()["data"]] == [
            ("workspace", ""),
            ("key", invoker["id"]),
            ("deployment", "summarize"),
            ("end_user", ""),
        ]
        assert read.put("/api/limits", json=body).status_code == 403
        assert invoke.get("/api/limits").status_code == 403

        for refused, field in (
            ({"subject_kind": "key", "subject": "nope", "requests_per_minute": 1}, "subject"),
            ({"subject_kind": "workspace", "subject": "x", "requests_per_minute": 1}, "subject"),
            ({"subject_kind": "workspace"}, "requests_per_minute"),
            ({"subject_kind": "team", "requests_per_minute": 1}, "subject_kind"),
            ({"subject_kind": "workspace", "requests_per_minute": 0}, "requests_per_minute"),
        ):
            answer = admin.put("/api/limits", json=refused)
            assert answer.status_code == 422, (refused, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "validation_error" and field in str(error["details"]), error

        assert admin.delete(f"/api/limits/{limit['id']}").status_code == 204
        missing = admin.delete(f"/api/limits/{limit['id']}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert len(read.get("/api/limits").json()["data"]) == 3

        sets, deleted = audit_actions(admin, "rate_limit.set"), audit_actions(admin, "rate_limit.deleted")
        assert len(sets) == 5 and len(deleted) == 1
        change = next(e for e in sets if e["before"] is not None)
        assert change["target_id"] == limit["id"]
        assert change["before"]["requests_per_minute"] == 10 and change["after"]["tokens_per_minute"] == 900
        assert deleted[0]["before"] == {
            "subject_kind": "key",
            "subject": invoker["id"],
            "requests_per_minute": None,
            "tokens_per_minute": 900,
        }
        assert deleted[0]["after"] is None


def test_budgets_show_spend_reserved_and_remaining(deck: Deck) -> None:
    now = datetime.now(UTC)
    today, _ = period_bounds("day", now)
    month, _ = period_bounds("month", now)
    write_run(deck, now, 2.5, end_user="ann")
    write_run(deck, now, 0.5, end_user="bob")
    earlier = 4.0 if today > month else 0.0  # a run earlier this month, unless today is the 1st
    if earlier:
        write_run(deck, today - timedelta(microseconds=1), earlier, end_user="ann")
    write_run(deck, month - timedelta(microseconds=1), 100.0, end_user="ann")  # last month

    with deck.client() as admin:
        made = admin.put(
            "/api/budgets", json={"subject_kind": "workspace", "period": "day", "amount_usd": 10}
        )
        assert made.status_code == 200, made.text
        budget = made.json()
        admin.put(
            "/api/budgets", json={"subject_kind": "end_user", "period": "month", "amount_usd": 50}
        ).raise_for_status()
        assert (
            admin.put(
                "/api/budgets", json={"subject_kind": "workspace", "period": "week", "amount_usd": 1}
            ).status_code
            == 422
        )
        assert (
            admin.put(
                "/api/budgets", json={"subject_kind": "workspace", "period": "day", "amount_usd": 0.1234567}
            ).status_code
            == 422
        )

        answer = admin.get("/api/budgets").json()
        assert answer["workspace"]["day"]["spent_usd"] == pytest.approx(3.0)
        assert answer["workspace"]["month"]["spent_usd"] == pytest.approx(3.0 + earlier)
        day, each_user = answer["data"]
        assert (day["spent_usd"], day["reserved_usd"], day["remaining_usd"]) == (3.0, 0.0, 7.0)
        assert datetime.fromisoformat(day["period_start"]) == today
        assert datetime.fromisoformat(day["period_end"]) == today + timedelta(days=1)
        assert each_user["shown_subject"] == "ann"
        assert each_user["spent_usd"] == pytest.approx(2.5 + earlier)

        # A call in flight holds its worst case until it is settled; then its real cost counts.
        governor = deck.services.engine.governor
        subjects = CallSubjects(deck.workspace_id, None, "summarize", None)

        async def admit() -> Any:
            return await governor.admit(subjects, lambda: 1.25)

        hold = deck.live.call(admit)
        day = admin.get("/api/budgets").json()["data"][0]
        assert (day["spent_usd"], day["reserved_usd"], day["remaining_usd"]) == (3.0, 1.25, 5.75)

        async def settle() -> None:
            await governor.settle(hold, 0.5, 10)

        deck.live.call(settle)
        day = admin.get("/api/budgets").json()["data"][0]
        assert (day["spent_usd"], day["reserved_usd"], day["remaining_usd"]) == (3.5, 0.0, 6.5)

        changed = admin.put(
            "/api/budgets", json={"subject_kind": "workspace", "period": "day", "amount_usd": 3}
        )
        assert changed.json()["id"] == budget["id"]
        assert admin.get("/api/budgets").json()["data"][0]["remaining_usd"] == 0.0
        assert admin.delete(f"/api/budgets/{budget['id']}").status_code == 204
        assert len(admin.get("/api/budgets").json()["data"]) == 1

        sets = audit_actions(admin, "budget.set")
        assert len(sets) == 3
        assert {"before": {**sets[0]["before"]}, "after": sets[0]["after"]} == {
            "before": {"subject_kind": "workspace", "subject": "", "period": "day", "amount_usd": 10.0},
            "after": {"subject_kind": "workspace", "subject": "", "period": "day", "amount_usd": 3.0},
        }
        assert audit_actions(admin, "budget.deleted")[0]["before"]["amount_usd"] == 3.0


def test_a_read_key_sees_budgets_but_cannot_change_them(deck: Deck) -> None:
    reader = created_key(deck, "read")
    with deck.client(reader["api_key"]) as read:
        assert read.get("/api/budgets").status_code == 200
        refused = read.put(
            "/api/budgets", json={"subject_kind": "workspace", "period": "day", "amount_usd": 1}
        )
        assert refused.status_code == 403
        assert read.delete("/api/budgets/whatever").status_code == 403
