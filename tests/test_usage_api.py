"""`GET /api/usage` on a live server, on SQLite and PostgreSQL: real invokes through a fake
upstream checked group by group against the run log itself, exact arithmetic (buckets,
percentiles, feedback, `other`) on runs handed to the writer with chosen times and latencies,
retention leaving the rollups alone, and every kind of bad query."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptdeck.domain.latency_histogram import bin_of, bin_value, percentile
from promptdeck.domain.runs import ERROR, RunRecord, utcnow
from promptdeck.domain.usage_query import floor_to
from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, deck_over, push_prompt
from tests.support.invoking import invoke
from tests.support.run_records import usage_run
from tests.test_run_queries import put

upstream = fake_openai.upstream
DAY = datetime(2026, 3, 2, tzinfo=UTC)
_counter = itertools.count()


@pytest.fixture
def live(upstream: FakeOpenAI, database_url: str, tmp_path: Path) -> Iterator[Deck]:
    """A server on each database: `fast` (variants default and beta) and `other`, both answered
    by the fake upstream."""
    with deck_over(upstream.url, database_url, tmp_path) as deck:
        push_prompt(deck.url, deck.admin_key, "other", "openai/other")
        yield deck


def ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


def problems(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == "validation_error"
    return list(body["error"]["details"])


def record(deck: Deck, **fields: Any) -> RunRecord:
    fields.setdefault("created_at", DAY + timedelta(hours=1, seconds=next(_counter)))
    return usage_run(deck.workspace_id, **fields)


def usage(client: httpx.Client, **params: Any) -> dict[str, Any]:
    return dict(ok(client.get("/api/usage", params=params)))


def by_group(answer: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    return {("other" if s["other"] else s["group"]): s["totals"] for s in answer["series"]}


def group_of(run: dict[str, Any], group_by: str) -> Any:
    """The group the answer should put a run in, from the run log's own fields."""
    deployment = run["deployment"]
    value = {
        "deployment": deployment,
        "variant": run["variant"] and f"{deployment}/{run['variant']}",
        "version": run["version_number"] and f"{deployment}@v{run['version_number']}",
        "model": run["model"],
        "provider": run["provider"],
        "user": run["end_user"],
    }.get(group_by)
    if group_by.startswith("metadata."):
        value = (run["metadata"] or {}).get(group_by.removeprefix("metadata."))
    return value or None


def test_every_group_by_agrees_with_the_run_log(live: Deck) -> None:
    """Real invokes (successes, a failure before any model call, an unknown deployment); for
    each group_by, every group's runs, errors, tokens and latency percentiles are what the
    logged runs add up to."""
    with live.client() as client:
        for _ in range(3):
            invoke(client, "fast", expect=(200, 404, 422), user="ann", metadata={"customer": "acme", "n": 1})
        for _ in range(2):
            invoke(
                client,
                "fast",
                expect=(200, 404, 422),
                variant="beta",
                user="bob",
                metadata={"customer": "globex"},
            )
        invoke(client, "other", expect=(200, 404, 422), user="ann")
        # missing inputs: an error run, no model call
        invoke(client, "fast", {}, expect=(200, 404, 422))
        # unknown deployment: an error run with nothing resolved
        invoke(client, "nope", expect=(200, 404, 422))
        logged = live.runs()
        assert len(logged) == 8 and sum(r["status"] == "error" for r in logged) == 2
        whole = usage(client)
        assert whole["bucket"] == "hour" and whole["group_by"] is None and whole["deployment"] is None
        (everything,) = whole["series"]
        assert everything["group"] == "all" and everything["other"] is False
        assert len(everything["points"]) == 24  # the last 24 hours, this one last
        this_hour = floor_to(utcnow(), "hour")
        assert everything["points"][-1]["t"] == this_hour.isoformat().replace("+00:00", "Z")
        assert everything["points"][-1] == {"t": everything["points"][-1]["t"], **everything["totals"]}
        assert sum(p["runs"] for p in everything["points"][:-1]) == 0
        for group_by in (
            "deployment",
            "variant",
            "version",
            "model",
            "provider",
            "user",
            "metadata.customer",
        ):
            expected: dict[Any, list[dict[str, Any]]] = {}
            for run in logged:
                expected.setdefault(group_of(run, group_by), []).append(run)
            found = by_group(usage(client, group_by=group_by))
            assert set(found) == set(expected), group_by
            for group, members in expected.items():
                totals = found[group]
                assert totals["runs"] == len(members), (group_by, group)
                assert totals["errors"] == sum(r["status"] == "error" for r in members)
                assert totals["input_tokens"] == sum(r["input_tokens"] for r in members)
                assert totals["output_tokens"] == sum(r["output_tokens"] for r in members)
                bins = Counter(bin_of(r["duration_ms"]) for r in members)
                wanted = percentile(bins, 0.95) if group_by != "user" else None  # no bins per user
                assert totals["latency_p95_ms"] == wanted, (group_by, group)
                assert totals["latency_mean_ms"] == pytest.approx(
                    sum(r["duration_ms"] for r in members) / len(members), abs=0.01
                )
        assert by_group(usage(client, group_by="deployment", deployment="fast")).keys() == {"fast"}
        beta = by_group(usage(client, group_by="variant", deployment="fast"))
        assert beta["fast/beta"]["runs"] == 2 and "other/default" not in beta


def test_day_buckets_percentiles_feedback_and_other(live: Deck) -> None:
    """Runs with chosen times and latencies: exact points, zeros for empty days, percentiles
    from the bins, feedback means, `limit` folding the rest into `other`."""
    latencies = [10.0] * 50 + [100.0] * 45 + [1000.0] * 4 + [60_000.0]
    runs_made = put(
        live,
        [
            record(
                live,
                deployment=("alpha", "beta", "gamma")[i % 3],
                duration_ms=latency,
                input_tokens=2,
                output_tokens=1,
                cost=0.001,
                ttft_ms=5.0,
                status=ERROR if i % 10 == 0 else "success",
                metadata={"tier": "gold"} if i % 2 else None,
            )
            for i, latency in enumerate(latencies)
        ]
        + [record(live, created_at=DAY + timedelta(days=2, hours=23), duration_ms=3.0)],
    )
    with live.client() as client:
        for run, body in ((runs_made[0], {"score": 0.2, "thumbs": "down"}), (runs_made[7], {"thumbs": "up"})):
            assert client.post(f"/api/runs/{run.id}/feedback", json=body).status_code == 201
        actual = {"actuals": [{"id": runs_made[3].id, "quality": 1}]}  # Vellum's feedback counts too
        assert client.post("/v1/submit-completion-actuals", json=actual).status_code == 200
        answer = usage(client, bucket="day", **{"from": "2026-03-01T10:00:00Z", "to": "2026-03-05"})
        assert (answer["from"], answer["to"]) == ("2026-03-01T00:00:00Z", "2026-03-05T00:00:00Z")
        (series,) = answer["series"]
        points = series["points"]
        assert [p["t"][:10] for p in points] == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]
        assert [p["runs"] for p in points] == [0, 100, 0, 1]
        empty = points[0]
        assert empty["latency_p50_ms"] is None and empty["feedback_mean"] is None and empty["cost"] == 0
        day = points[1]
        assert (day["errors"], day["input_tokens"], day["output_tokens"]) == (10, 200, 100)
        assert day["cost"] == pytest.approx(0.1) and day["ttft_mean_ms"] == 5.0
        assert day["error_rate"] == pytest.approx(0.1)
        assert day["latency_p50_ms"] == round(bin_value(bin_of(10.0)), 2)  # the 50th of 100 is 10 ms
        assert day["latency_p95_ms"] == round(bin_value(bin_of(100.0)), 2)
        assert day["latency_p99_ms"] == round(bin_value(bin_of(1000.0)), 2)
        assert abs(day["latency_p99_ms"] - 1000.0) / 1000.0 < 0.095  # the documented bound
        assert day["latency_mean_ms"] == pytest.approx(sum(latencies) / 100, abs=0.01)
        assert (day["feedback_count"], day["thumbs_up"], day["thumbs_down"]) == (3, 1, 1)
        assert day["feedback_mean"] == pytest.approx(0.6)  # (0.2 + 1) / 2 scored items
        assert series["totals"]["runs"] == 101 and series["totals"]["latency_p50_ms"] == day["latency_p50_ms"]

        top = usage(client, bucket="day", group_by="deployment", limit=1, **{"from": "2026-03-01"})
        assert [(s["group"], s["other"]) for s in top["series"]] == [("alpha", False), ("other", True)]
        assert [s["totals"]["runs"] for s in top["series"]] == [35, 66]
        assert top["series"][1]["totals"]["feedback_count"] == 1  # beta's run 7 had thumbs up

        tiers = usage(client, bucket="day", group_by="metadata.tier", **{"from": "2026-03-01"})
        assert [(s["group"], s["other"], s["totals"]["runs"]) for s in tiers["series"]] == [
            ("gold", False, 50),
            (None, False, 51),  # the runs without the key
        ]
        hours = usage(client, **{"from": "2026-03-02T00:30:00Z", "to": "2026-03-02T03:00:00Z"})
        assert [p["runs"] for p in hours["series"][0]["points"]] == [0, 100, 0]


PERCENTILE_FIELDS = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")


def without_percentiles(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if name not in PERCENTILE_FIELDS}


def test_total_and_percentiles_over_the_range_only(live: Deck) -> None:
    """A grouped answer carries the ungrouped series as `total`; `percentiles=totals` gives the
    same answer but for the groups' per-point percentiles (null), their totals' percentiles
    being those per-point computation gives — for shown groups, `other` and the runs without a
    metadata key alike."""
    put(
        live,
        [
            record(
                live,
                deployment=("alpha", "beta", "gamma")[i % 3],
                duration_ms=(5.0, 40.0, 300.0, 2500.0)[i % 4] * (1 + i % 5),
                created_at=DAY + timedelta(days=i % 2, hours=i % 7, seconds=i),
                metadata={"tier": ("gold", "silver")[i % 2]} if i % 3 else None,
                cost=0.001,
            )
            for i in range(60)
        ],
    )
    with live.client() as client:
        span = {"bucket": "day", "from": "2026-03-01", "to": "2026-03-05"}
        (whole,) = usage(client, **span)["series"]
        assert usage(client, **span)["total"] == whole and whole["totals"]["runs"] == 60
        assert any(p["latency_p95_ms"] is not None for p in whole["points"])
        views = (
            {"group_by": "deployment", "limit": 1},  # alpha and an `other`
            {"group_by": "deployment"},  # every value shown
            {"group_by": "metadata.tier", "limit": 1},  # gold, `other` and the runs without the key
            {"group_by": "variant", "deployment": "alpha"},
            {"group_by": "user"},  # no bins: no percentiles either way
        )
        for view in views:
            per_point = usage(client, **span, **view)
            per_range = usage(client, **span, **view, percentiles="totals")
            assert per_point["percentiles"] == "points" and per_range["percentiles"] == "totals"
            narrowed = {k: v for k, v in view.items() if k == "deployment"}
            expected_total = usage(client, **span, **narrowed)["series"][0]
            assert per_point["total"] == per_range["total"] == expected_total, view
            assert [(s["group"], s["other"]) for s in per_range["series"]] == [
                (s["group"], s["other"]) for s in per_point["series"]
            ]
            for points, ranged in zip(per_point["series"], per_range["series"], strict=True):
                assert ranged["totals"] == points["totals"], (view, ranged["group"])
                assert all(ranged["points"][i][f] is None for i in range(4) for f in PERCENTILE_FIELDS)
                assert [without_percentiles(p) for p in ranged["points"]] == [
                    without_percentiles(p) for p in points["points"]
                ]
            binned = view["group_by"] != "user"
            assert any(s["totals"]["latency_p95_ms"] is not None for s in per_range["series"]) == binned
        other = usage(client, **span, group_by="metadata.tier", limit=1, percentiles="totals")
        assert [(s["group"], s["other"], s["totals"]["runs"]) for s in other["series"]] == [
            ("gold", False, 20),
            ("other", True, 20),
            (None, False, 20),
        ]
        assert problems(client.get("/api/usage", params={"percentiles": "buckets"})) == [
            "percentiles: expected points or totals; got 'buckets'"
        ]


def test_pruning_runs_keeps_usage_and_end_users(live: Deck) -> None:
    old = utcnow() - timedelta(days=40)
    put(
        live,
        [record(live, end_user="ann", cost=0.5, created_at=old + timedelta(minutes=i)) for i in range(4)],
    )
    with live.client() as client:
        before_usage = usage(client, bucket="day", **{"from": (old - timedelta(days=1)).isoformat()})
        before_users = ok(client.get("/api/users"))
        assert before_usage["series"][0]["totals"]["runs"] == 4
        assert ok(client.put("/api/settings/retention", json={"days": 30})) == {"days": 30}
        assert live.live.call(live.services.retention.prune) == {live.workspace_id: 4}
        assert ok(client.get("/api/runs"))["data"] == []
        assert usage(client, bucket="day", **{"from": (old - timedelta(days=1)).isoformat()}) == before_usage
        assert ok(client.get("/api/users")) == before_users
        assert before_users["data"][0]["runs"] == 4


def test_bad_usage_queries_are_422_with_every_problem(live: Deck) -> None:
    with live.client() as client:
        assert problems(client.get("/api/usage", params={"bucket": "week"})) == [
            "bucket: expected hour or day; got 'week'"
        ]
        assert "group_by:" in problems(client.get("/api/usage", params={"group_by": "colour"}))[0]
        assert "needs a key" in problems(client.get("/api/usage", params={"group_by": "metadata."}))[0]
        long_key = {"group_by": "metadata." + "k" * 65}
        assert "longer than 64" in problems(client.get("/api/usage", params=long_key))[0]
        assert "from:" in problems(client.get("/api/usage", params={"from": "yesterday"}))[0]
        assert "to:" in problems(client.get("/api/usage", params={"to": "2026-02-30"}))[0]
        backwards = {"from": "2026-03-02", "to": "2026-03-01"}
        assert problems(client.get("/api/usage", params=backwards)) == ["from: must be before to"]
        too_long = {"from": "2026-01-01", "to": "2026-06-01"}
        assert "at most 2000 hours" in problems(client.get("/api/usage", params=too_long))[0]
        assert (
            usage(client, bucket="day", **too_long)["series"][0]["points"][0]["t"] == "2026-01-01T00:00:00Z"
        )
        for limit in ("0", "101", "ten"):
            assert "limit:" in problems(client.get("/api/usage", params={"limit": limit}))[0]
        mixed = {"deployment": "fast", "group_by": "model"}
        assert "deployment:" in problems(client.get("/api/usage", params=mixed))[0]
        everything = {"bucket": "week", "group_by": "colour", "from": "x", "limit": "0"}
        assert len(problems(client.get("/api/usage", params=everything))) == 4  # all at once
        key = ok(client.post("/api/keys", json={"name": "dash", "scopes": ["read"]}))["api_key"]
        caller = ok(client.post("/api/keys", json={"name": "app", "scopes": ["invoke"]}))["api_key"]
    with live.client(key) as reader:
        assert reader.get("/api/usage").status_code == 200
    with live.client(caller) as invoker:
        assert invoker.get("/api/usage").json()["error"]["code"] == "forbidden"
    assert httpx.get(live.url + "/api/usage").status_code == 401
