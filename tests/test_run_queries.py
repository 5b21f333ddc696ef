"""The run log's query API: filters, metadata conditions, sorts with keyset paging, metadata
keys, feedback, export and retention. Runs are put straight into the run writer (or made by
invokes that fail input validation, which log a run without any model call)."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from promptdeck.domain.runs import ERROR, RunRecord, utcnow
from promptdeck.store.retention import RetentionStore
from promptdeck.store.tables import feedback, run_metadata, runs
from tests.conftest import Deck

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_counter = itertools.count()


def record(deck: Deck, **fields: Any) -> RunRecord:
    n = next(_counter)
    values: dict[str, Any] = {
        "workspace_id": deck.workspace_id,
        "dialect": "fetchhive",
        "deployment": "summarize",
        "streamed": False,
        "variant": "default",
        "version_number": 1,
        "model": "openai/gpt-4o-mini",
        "provider": "openai",
        "inputs": {"text": f"input {n}"},
        "output": f"output {n}",
        "duration_ms": 100.0,
        "created_at": BASE + timedelta(seconds=n),
    }
    values.update(fields)
    return RunRecord(**values)


def put(deck: Deck, records: Iterable[RunRecord]) -> list[RunRecord]:
    records = list(records)

    async def go() -> None:
        for item in records:
            await deck.services.writer.put(item)
        await deck.services.writer.flush()

    deck.live.call(go)
    return records


def ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


def ids(client: httpx.Client, **params: Any) -> list[str]:
    """Every matching run id, following next_cursor page by page."""
    found: list[str] = []
    cursor = None
    while True:
        page = ok(client.get("/api/runs", params={**params, **({"cursor": cursor} if cursor else {})}))
        found += [r["id"] for r in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def problem(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    body = response.json()["error"]
    assert body["code"] == "validation_error"
    return str(body["message"])


# ── filters ───────────────────────────────────────────────────────────────────


def test_every_filter_alone_and_combined(deck: Deck) -> None:
    a = record(deck, deployment="alpha", variant="beta", version_number=2, end_user="ann")
    b = record(deck, deployment="alpha", model="anthropic/claude", provider="anthropic", end_user="bob")
    c = record(deck, deployment="gamma", status=ERROR, error_code="validation_error", output="")
    d = record(deck, deployment="gamma", created_at=BASE + timedelta(days=2))
    put(deck, [a, b, c, d])
    with deck.client() as client:
        newest_first = [d.id, c.id, b.id, a.id]
        assert ids(client) == newest_first
        assert ids(client, deployment="alpha") == [b.id, a.id]
        assert ids(client, variant="beta") == [a.id]
        assert ids(client, version=2) == [a.id]
        assert ids(client, model="anthropic/claude") == [b.id]
        assert ids(client, provider="openai") == [d.id, c.id, a.id]
        assert ids(client, status="error") == [c.id]
        assert ids(client, status="success") == [d.id, b.id, a.id]
        assert ids(client, user="ann") == [a.id]
        assert ids(client, since=(BASE + timedelta(days=1)).isoformat()) == [d.id]
        assert ids(client, until=(BASE + timedelta(days=1)).isoformat().replace("+00:00", "Z")) == [
            c.id,
            b.id,
            a.id,
        ]
        # since is inclusive, until exclusive; a time in another zone means the same instant
        local = b.created_at.astimezone(timezone(timedelta(hours=2)))
        assert ids(client, since=local.isoformat(), until=c.created_at.isoformat()) == [b.id]
        assert ids(client, deployment="gamma", status="success") == [d.id]
        assert ids(client, deployment="alpha", user="bob", provider="anthropic") == [b.id]
        assert ids(client, deployment="nope") == []


def test_invalid_filters_are_422_naming_the_parameter(deck: Deck) -> None:
    with deck.client() as client:
        assert "version:" in problem(client.get("/api/runs", params={"version": "two"}))
        assert "status:" in problem(client.get("/api/runs", params={"status": "great"}))
        assert "since:" in problem(client.get("/api/runs", params={"since": "yesterday"}))
        assert "until:" in problem(client.get("/api/runs", params={"until": "2026-13-01"}))
        assert "meta:" in problem(client.get("/api/runs", params={"meta": "score>high"}))
        assert "meta:" in problem(client.get("/api/runs", params={"meta": ":x"}))
        assert "sort:" in problem(client.get("/api/runs", params={"sort": "size"}))
        assert "order:" in problem(client.get("/api/runs", params={"order": "up"}))
        assert "q:" in problem(client.get("/api/runs", params={"q": " "}))
        assert "format:" in problem(client.get("/api/runs/export", params={"format": "xml"}))
        both = client.get("/api/runs", params={"version": "x", "status": "y"}).json()["error"]
        assert len(both["details"]) == 2  # every problem at once
        page = ok(client.get("/api/runs", params={"limit": 1}))
        assert page["next_cursor"] is None  # nothing logged yet
        put(deck, [record(deck), record(deck)])
        cursor = ok(client.get("/api/runs", params={"limit": 1}))["next_cursor"]
        assert "cursor:" in problem(client.get("/api/runs", params={"cursor": cursor, "sort": "cost"}))
        assert "cursor:" in problem(client.get("/api/runs", params={"cursor": "garbage"}))


def test_free_text_searches_inputs_and_output_case_insensitively(deck: Deck) -> None:
    a = record(deck, inputs={"text": "The Quick brown fox"}, output="nothing")
    b = record(deck, inputs={"text": "lazy dog"}, output="A QUICK answer")
    c = record(deck, inputs={"text": "100% sure_thing"}, output="")
    put(deck, [a, b, c])
    with deck.client() as client:
        assert ids(client, q="quick") == [b.id, a.id]
        assert ids(client, q="LAZY") == [b.id]
        assert ids(client, q="100%") == [c.id]  # LIKE wildcards are taken literally
        assert ids(client, q="fox_") == []  # "_" is no wildcard either
        assert ids(client, q="e_t") == [c.id]
        assert ids(client, q="quick", deployment="other") == []


def test_metadata_conditions(deck: Deck) -> None:
    a = record(deck, metadata={"env": "prod", "score": 5, "tier": "gold"})
    b = record(deck, metadata={"env": "dev", "score": 2.5})
    c = record(deck, metadata={"env": "prod", "score": "10"})  # a numeric string is a number too
    d = record(deck, metadata={"flag": True, "score": 3.0})
    e = record(deck, metadata={"long": "x" * 300, "k" * 250: "v", "nul": "a\x00b"})
    put(deck, [a, b, c, d, e])
    with deck.client() as client:
        assert ids(client, meta="env:prod") == [c.id, a.id]
        assert ids(client, meta="env") == [c.id, b.id, a.id]
        assert ids(client, meta="tier") == [a.id]
        assert ids(client, meta="score>3") == [c.id, a.id]
        assert ids(client, meta="score<3") == [b.id]
        assert ids(client, meta="score>-1") == [d.id, c.id, b.id, a.id]
        assert ids(client, meta="score:3") == [d.id]  # 3.0 is written as "3"
        assert ids(client, meta="flag:true") == [d.id]
        assert ids(client, meta=["env:prod", "score>6"]) == [c.id]  # conditions AND together
        assert ids(client, meta=["env:prod", "tier"], status="success") == [a.id]
        assert ids(client, meta="nope") == []
        assert ids(client, meta="long:" + "x" * 256) == [e.id]  # values are kept to 256 characters
        assert ids(client, meta="k" * 200) == [e.id]  # keys to 200
        assert ids(client, meta="nul:ab") == [e.id]
        assert ids(client, meta="url:https://x.example/a:b") == []  # the first ':' splits


def test_metadata_rows_are_written_with_the_run(deck: Deck) -> None:
    """A real invoke (failing input validation: no model call) writes its metadata rows too."""
    with deck.client() as client:
        response = client.post(
            "/v1/prompt/invoke",
            json={"deployment": "summarize", "inputs": {}, "metadata": {"customer": "acme", "n": 7}},
        )
        assert response.status_code == 422
        deck.flush()
        (run,) = ok(client.get("/api/runs", params={"meta": "customer:acme"}))["data"]
        assert run["status"] == "error" and run["metadata"] == {"customer": "acme", "n": 7}
        assert [r["id"] for r in ok(client.get("/api/runs", params={"meta": "n>6"}))["data"]] == [run["id"]]


# ── sorts and paging ──────────────────────────────────────────────────────────


SORTED_BY = {
    "time": lambda r: r.created_at,
    "latency": lambda r: r.duration_ms,
    "cost": lambda r: r.cost if r.cost is not None else -1.0,
    "tokens": lambda r: r.input_tokens + r.output_tokens,
}


@pytest.mark.parametrize("sort", ["time", "latency", "cost", "tokens"])
def test_each_sort_pages_without_duplicates_or_omissions(deck: Deck, sort: str) -> None:
    # many ties (values repeat every 4 runs) and unknown costs, so the id must break ties
    made = put(
        deck,
        [
            record(
                deck,
                duration_ms=float(i % 4) * 10.5,
                cost=None if i % 5 == 0 else (i % 3) * 0.001,
                input_tokens=i % 4,
                output_tokens=(i % 2) * 3,
                created_at=BASE + timedelta(seconds=i // 2),  # pairs share a time
            )
            for i in range(23)
        ],
    )
    for order in ("desc", "asc"):
        expected = sorted(made, key=lambda r: (SORTED_BY[sort](r), r.id), reverse=order == "desc")
        with deck.client() as client:
            got = ids(client, sort=sort, order=order, limit=4)
        assert got == [r.id for r in expected], (sort, order)
    with deck.client() as client:
        assert ids(client, sort=sort, limit=5, deployment="summarize") == ids(client, sort=sort, limit=200)


@pytest.mark.parametrize("sort", ["time", "latency"])
def test_cursor_stays_correct_while_runs_arrive(deck: Deck, sort: str) -> None:
    first = put(deck, [record(deck, duration_ms=float(i), created_at=utcnow()) for i in range(10)])
    seen: list[str] = []
    with deck.client() as client:
        page = ok(client.get("/api/runs", params={"sort": sort, "limit": 3}))
        seen += [r["id"] for r in page["data"]]
        while page["next_cursor"]:
            # newer, slower and faster runs arrive between pages
            put(deck, [record(deck, duration_ms=d, created_at=utcnow()) for d in (0.5, 99.0)])
            page = ok(
                client.get("/api/runs", params={"sort": sort, "limit": 3, "cursor": page["next_cursor"]})
            )
            seen += [r["id"] for r in page["data"]]
    assert len(seen) == len(set(seen))
    first_ids = [r.id for r in sorted(first, key=lambda r: (SORTED_BY[sort](r), r.id), reverse=True)]
    assert [i for i in seen if i in set(first_ids)] == first_ids  # none of the first runs skipped
    if sort == "time":
        assert seen[:10] == first_ids  # later arrivals are newer than the cursor: never shown


# ── metadata keys ─────────────────────────────────────────────────────────────


def test_metadata_keys_of_recent_runs(deck: Deck) -> None:
    now = utcnow()
    put(
        deck,
        [
            record(deck, metadata={"env": "prod", "customer": "acme"}, created_at=now),
            record(deck, metadata={"env": "prod", "n": 1}, created_at=now),
            record(deck, metadata={"env": "dev"}, created_at=now),
            record(deck, metadata={"old_key": "x"}, created_at=now - timedelta(days=30)),
        ],
    )
    with deck.client() as client:
        body = ok(client.get("/api/runs/metadata-keys"))
    keys = {k["key"]: k for k in body["data"]}
    assert set(keys) == {"env", "customer", "n"}  # old_key is older than the window
    assert body["data"][0] == {"key": "env", "count": 3, "examples": ["prod", "dev"]}
    assert keys["customer"] == {"key": "customer", "count": 1, "examples": ["acme"]}
    assert keys["n"]["examples"] == ["1"]


# ── feedback ──────────────────────────────────────────────────────────────────


def test_feedback_is_stored_and_shown_in_run_detail(deck: Deck) -> None:
    (run,) = put(deck, [record(deck)])
    with deck.client() as client:
        first = ok(
            client.post(
                f"/api/runs/{run.id}/feedback", json={"score": 0.8, "thumbs": "up", "metadata": {"by": "qa"}}
            )
        )
        assert first["quality"] == 0.8 and first["thumbs"] == "up" and first["run_id"] == run.id
        ok(client.post(f"/api/runs/{run.request_id}/feedback", json={"correction": "Better answer."}))
        detail = ok(client.get(f"/api/runs/{run.id}"))
        assert [(f["quality"], f["thumbs"], f["text"], f["metadata"]) for f in detail["feedback"]] == [
            (0.8, "up", None, {"by": "qa"}),
            (None, None, "Better answer.", None),
        ]
        assert client.post("/api/runs/nope/feedback", json={"score": 1}).status_code == 404
        assert client.post(f"/api/runs/{run.id}/feedback", json={"metadata": {"a": 1}}).status_code == 422
        assert client.post(f"/api/runs/{run.id}/feedback", json={"score": 1.5}).status_code == 422
        assert client.post(f"/api/runs/{run.id}/feedback", json={"thumbs": "sideways"}).status_code == 422
        read_key = ok(client.post("/api/keys", json={"name": "r", "scopes": ["read"]}))["api_key"]
    with deck.client(read_key) as reader:
        assert reader.post(f"/api/runs/{run.id}/feedback", json={"score": 1}).status_code == 403
        assert reader.get(f"/api/runs/{run.id}").status_code == 200


# ── export ────────────────────────────────────────────────────────────────────


def test_export_jsonl_and_csv_with_filters(deck: Deck, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("promptdeck.store.run_log.EXPORT_PAGE", 3)  # several keyset pages
    made = put(
        deck,
        [
            record(
                deck,
                metadata={"i": i},
                output=f'say "hi",\nline {i}',
                deployment="alpha" if i % 2 else "beta",
            )
            for i in range(8)
        ],
    )
    alpha = [r for r in reversed(made) if r.deployment == "alpha"]
    with deck.client() as client:
        response = client.get("/api/runs/export", params={"format": "jsonl"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/x-ndjson")
        assert response.headers["content-disposition"].startswith('attachment; filename="runs-')
        lines = [orjson.loads(line) for line in response.text.splitlines()]
        assert [r["id"] for r in lines] == [r.id for r in reversed(made)]
        assert lines[0]["metadata"] == {"i": 7} and lines[0]["output"] == 'say "hi",\nline 7'
        assert lines[0]["created_at"].endswith("Z")  # as the rest of the API writes times

        response = client.get("/api/runs/export", params={"format": "csv", "deployment": "alpha"})
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        assert ".csv" in response.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [r["id"] for r in rows] == [r.id for r in alpha]
        assert rows[0]["output"] == alpha[0].output and orjson.loads(rows[0]["metadata"]) == alpha[0].metadata
        assert rows[0]["deployment"] == "alpha" and float(rows[0]["duration_ms"]) == 100.0
        assert rows[0]["created_at"].endswith("Z") and rows[0]["cost"] == ""

        asc = client.get("/api/runs/export", params={"sort": "time", "order": "asc", "meta": "i<2"})
        assert [orjson.loads(x)["id"] for x in asc.text.splitlines()] == [made[0].id, made[1].id]


# ── retention ─────────────────────────────────────────────────────────────────


def test_retention_setting(deck: Deck) -> None:
    with deck.client() as client:
        assert ok(client.get("/api/settings/retention")) == {"days": None}
        assert ok(client.put("/api/settings/retention", json={"days": 30})) == {"days": 30}
        assert ok(client.get("/api/settings/retention")) == {"days": 30}
        assert client.put("/api/settings/retention", json={"days": 0}).status_code == 422
        assert client.put("/api/settings/retention", json={}).status_code == 422
        assert ok(client.put("/api/settings/retention", json={"days": None})) == {"days": None}


def test_prune_deletes_old_runs_in_batches_with_metadata_and_feedback(deck: Deck) -> None:
    now = utcnow()
    old = put(
        deck,
        [record(deck, metadata={"k": i}, created_at=now - timedelta(days=40, seconds=i)) for i in range(25)],
    )
    recent = put(deck, [record(deck, metadata={"k": "new"}, created_at=now - timedelta(days=5))])
    with deck.client() as client:
        ok(client.post(f"/api/runs/{old[0].id}/feedback", json={"score": 1}))
        ok(client.post(f"/api/runs/{recent[0].id}/feedback", json={"score": 1}))
        ok(client.put("/api/settings/retention", json={"days": 30}))
    store = RetentionStore(deck.services.db)

    async def prune() -> tuple[int, int]:
        return await store.prune_workspace(deck.workspace_id, now - timedelta(days=30), batch_size=10)

    assert deck.live.call(prune) == (25, 3)  # 10 + 10 + 5 ids, one transaction each

    async def counts() -> tuple[int, int, int]:
        found = []
        async with deck.services.db.connect() as conn:
            for table in (runs, run_metadata, feedback):
                found.append((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())
        return found[0], found[1], found[2]

    assert deck.live.call(counts) == (1, 1, 1)
    assert [r["id"] for r in deck.runs()] == [recent[0].id]
    # prune() applies each workspace's own period (as `promptdeck prune` and the hourly task do)
    put(deck, [record(deck, created_at=now - timedelta(days=31))])
    assert deck.live.call(lambda: store.prune(now)) == {deck.workspace_id: 1}
    assert deck.live.call(counts) == (1, 1, 1)
