"""Signed webhooks, end to end: endpoints managed over the admin API of a live server, events raised
by real catalog writes, delivered to a real aiohttp receiver on loopback (allowed by the
development setting) and checked here with `hmac` alone; retries and the delivery log; the
outbound URL policy; the secret shown once. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiohttp.abc import AbstractResolver, ResolveResult
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from promptdeck.domain.outbound_urls import address_problem
from promptdeck.store.database import MIGRATIONS, normalize_url
from tests.conftest import Deck, make_settings, seed
from tests.support.live_server import start_server
from tests.support.postgres import free_port
from tests.support.webhook_receiver import Received, Receiver, receiver

CATALOG_EVENTS = [
    "version.created",
    "variant.moved",
    "variant.rolled_back",
    "deployment.created",
    "deployment.deleted",
]
QUICK = (0.05, 0.1, 0.2)  # retry delays for tests: three retries in well under a second


def start_deck(database_url: str, tmp_path: Path, **overrides: Any) -> Deck:
    settings = make_settings(database_url, tmp_path, writer_flush_seconds=0.05, **overrides)
    workspace_id, key = seed(settings)
    return Deck(start_server(settings), key, workspace_id)


@pytest.fixture
def deck(database_url: str, tmp_path: Path) -> Iterator[Deck]:
    """A server that may deliver to loopback (PROMPTDECK_WEBHOOKS_ALLOW_PRIVATE=true)."""
    deck = start_deck(database_url, tmp_path, webhooks_allow_private=True)
    yield deck
    deck.live.stop()


@pytest.fixture
def strict_deck(tmp_path: Path) -> Iterator[Deck]:
    """A server with the production URL policy."""
    deck = start_deck(f"sqlite+aiosqlite:///{tmp_path / 'promptdeck.db'}", tmp_path)
    yield deck
    deck.live.stop()


class NamesResolver(AbstractResolver):
    """DNS for made-up names: each maps to the address given (changeable, as DNS is)."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.names:
            raise OSError(f"unknown name {host}")
        address = self.names[host]
        kind = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [{"hostname": host, "host": address, "port": port, "family": kind, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        return None


def add_endpoint(client: httpx.Client, url: str, events: list[str]) -> dict[str, Any]:
    response = client.post("/api/webhooks", json={"url": url, "events": events, "description": "tests"})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def check_signature(seen: Received, secret: str) -> dict[str, Any]:
    """What a receiver does (docs/operations.md): recompute the HMAC, compare in constant time,
    refuse an old timestamp."""
    timestamp = seen.headers["Promptdeck-Webhook-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + seen.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(seen.headers["Promptdeck-Webhook-Signature"], f"v1={expected}")
    assert abs(time.time() - int(timestamp)) < 300
    event = seen.event
    assert seen.headers["Promptdeck-Webhook-Id"] == event["id"]
    assert set(event) == {"id", "type", "created_at", "workspace_id", "data"}
    return event


def wait_for_types(hook: Receiver, kinds: list[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not all(hook.of_type(kind) for kind in kinds):
        if time.monotonic() > deadline:
            got = [r.event["type"] for r in hook.seen]
            raise AssertionError(f"the receiver got {got}, not every one of {kinds}")
        time.sleep(0.02)


def deliveries(client: httpx.Client, endpoint_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/webhooks/{endpoint_id}/deliveries")
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def wait_until_finished(client: httpx.Client, endpoint_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        log = deliveries(client, endpoint_id)
        if len(log) >= count and all(d["state"] != "pending" for d in log):
            return log
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries still pending: {log}")
        time.sleep(0.05)


def test_every_catalog_event_is_delivered_signed(deck: Deck) -> None:
    with receiver() as hook, deck.client() as client:
        created = add_endpoint(client, hook.url, CATALOG_EVENTS)
        secret = created["secret"]
        assert secret.startswith("whsec_") and created["enabled"] is True

        version = {
            "model": "local/smollm2-135m-instruct",
            "messages": [{"role": "user", "content": "{{text}}"}],
        }
        for variant in ("default", "short"):  # following `latest` is an explicit choice
            follow = client.put(f"/api/deployments/summarize/variants/{variant}", json={"version": "latest"})
            assert follow.status_code == 200, follow.text
        assert client.post("/api/prompts/summarize/versions", json=version).status_code == 201
        assert client.put("/api/deployments/summarize/variants/short", json={"version": 1}).status_code == 200
        assert client.post("/api/deployments/summarize/variants/short/rollback").status_code == 200
        made = client.post("/api/deployments", json={"name": "digest", "prompt": "summarize"})
        assert made.status_code == 201, made.text
        assert client.delete("/api/deployments/digest").status_code == 204
        assert client.get("/api/deployments/digest").status_code == 404

        wait_for_types(hook, CATALOG_EVENTS)
        events = {kind: [check_signature(r, secret) for r in hook.of_type(kind)] for kind in CATALOG_EVENTS}
        for kind, sent in events.items():
            for event in sent:
                assert event["type"] == kind and event["workspace_id"] == deck.workspace_id

        (version_created,) = events["version.created"]
        data = version_created["data"]
        assert set(data) == {"prompt", "version", "model", "author", "note"}
        assert (data["prompt"], data["version"], data["model"]) == (
            "summarize",
            2,
            "local/smollm2-135m-instruct",
        )
        moves = {
            (e["data"]["deployment"], e["data"]["variant"], e["data"]["to_version"])
            for e in events["variant.moved"]
        }
        # the followers of `latest` moved to 2, then `short` was pinned to 1; `digest` was created at 2
        assert {("summarize", "default", 2), ("summarize", "short", 2), ("summarize", "short", 1)} <= moves
        (rolled_back,) = events["variant.rolled_back"]
        assert rolled_back["data"]["variant"] == "short"
        assert (rolled_back["data"]["from_version"], rolled_back["data"]["to_version"]) == (1, 2)
        assert [e["data"] for e in events["deployment.created"]] == [
            {"deployment": "digest", "prompt": "summarize", "default_variant": "default"}
        ]
        assert [e["data"] for e in events["deployment.deleted"]] == [
            {"deployment": "digest", "prompt": "summarize"}
        ]

        log = wait_until_finished(client, created["id"], len(hook.seen))
        assert len(log) == len(hook.seen)
        for delivery in log:
            assert delivery["state"] == "delivered" and delivery["attempts"] == 1
            (only,) = delivery["tries"]
            assert only["status_code"] == 200 and only["error"] is None and only["next_attempt_at"] is None


def test_an_evaluation_that_ends_is_announced_with_its_summary(tmp_path: Path) -> None:
    """`evaluation.finished`, raised when an evaluation on the embedded model ends (SQLite only:
    the database has no part in announcing it)."""
    deck = start_deck(
        f"sqlite+aiosqlite:///{tmp_path / 'promptdeck.db'}", tmp_path, webhooks_allow_private=True
    )
    try:
        with receiver() as hook, deck.client() as client:
            created = add_endpoint(client, hook.url, ["evaluation.finished"])
            dataset = {
                "name": "smoke",
                "evaluators": [{"type": "length", "max_length": 2000}],
                "cases": [{"inputs": {"text": "Owls hunt at night."}}],
            }
            assert client.post("/api/prompts/summarize/datasets", json=dataset).status_code == 201
            started = client.post(
                "/api/prompts/summarize/evaluations", json={"dataset": "smoke", "version": 1}
            )
            assert started.status_code == 202, started.text

            wait_for_types(hook, ["evaluation.finished"], timeout=60)
            (event,) = [check_signature(r, created["secret"]) for r in hook.of_type("evaluation.finished")]
            details = event["data"]["details"]
            assert details["id"] == started.json()["id"] and details["status"] == "done"
            assert (details["prompt"], details["dataset"], details["version"]) == ("summarize", "smoke", 1)
            assert details["total"] == details["completed"] == 1 and details["finished_at"]
            assert details["summary"]["pass_rate"] == 1.0
    finally:
        deck.live.stop()


def test_a_failing_receiver_is_retried_with_the_same_event_until_it_answers(deck: Deck) -> None:
    deck.services.webhooks.dispatcher.delays = QUICK
    with receiver() as hook, deck.client() as client:
        hook.statuses = [500, 503]
        endpoint = add_endpoint(client, hook.url, ["version.created"])
        version = {
            "model": "local/smollm2-135m-instruct",
            "messages": [{"role": "user", "content": "{{text}}"}],
        }
        assert client.post("/api/prompts/summarize/versions", json=version).status_code == 201

        first, second, third = hook.wait_for(3)
        assert first.body == second.body == third.body  # the same event, byte for byte
        for seen in (first, second, third):
            assert check_signature(seen, endpoint["secret"])["type"] == "version.created"
        (delivery,) = wait_until_finished(client, endpoint["id"], 1)
        assert delivery["state"] == "delivered" and delivery["attempts"] == 3
        assert [t["status_code"] for t in delivery["tries"]] == [500, 503, 200]
        assert [t["attempt"] for t in delivery["tries"]] == [1, 2, 3]
        assert all(t["next_attempt_at"] is not None for t in delivery["tries"][:2])
        assert delivery["tries"][2]["next_attempt_at"] is None
        time.sleep(0.3)
        assert len(hook.seen) == 3  # nothing after the success


def test_a_delivery_fails_after_its_last_try_and_says_why(deck: Deck) -> None:
    deck.services.webhooks.dispatcher.delays = QUICK[:1]
    nobody = f"http://127.0.0.1:{free_port()}/hooks"  # nothing listens there
    with deck.client() as client:
        endpoint = add_endpoint(client, nobody, ["deployment.created"])
        assert (
            client.post("/api/deployments", json={"name": "brief", "prompt": "summarize"}).status_code == 201
        )
        (delivery,) = wait_until_finished(client, endpoint["id"], 1)
        assert delivery["state"] == "failed" and delivery["attempts"] == 2
        for tried in delivery["tries"]:
            assert tried["status_code"] is None and tried["error"]


def test_an_unfinished_delivery_resumes_at_the_next_start(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, writer_flush_seconds=0.05, webhooks_allow_private=True)
    workspace_id, key = seed(settings)
    first = Deck(start_server(settings), key, workspace_id)
    first.services.webhooks.dispatcher.delays = (1.5,)
    with receiver() as hook:
        hook.statuses = [500]
        with first.client() as client:
            endpoint = add_endpoint(client, hook.url, ["deployment.created"])
            assert (
                client.post("/api/deployments", json={"name": "later", "prompt": "summarize"}).status_code
                == 201
            )
            hook.wait_for(1)
        first.live.stop()  # before the retry is due

        second = Deck(start_server(settings), key, workspace_id)
        try:
            _, resumed = hook.wait_for(2)
            assert check_signature(resumed, endpoint["secret"])["data"]["deployment"] == "later"
            with second.client() as client:
                (delivery,) = wait_until_finished(client, endpoint["id"], 1)
            assert [t["status_code"] for t in delivery["tries"]] == [500, 200]
        finally:
            second.live.stop()


def test_a_ping_is_signed_and_answered_with_its_try(deck: Deck) -> None:
    with receiver() as hook, deck.client() as client:
        endpoint = add_endpoint(client, hook.url, ["version.created"])
        answer = client.post(f"/api/webhooks/{endpoint['id']}/ping")
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "delivered" and answer.json()["tries"][0]["status_code"] == 200
        (seen,) = hook.wait_for(1)
        assert check_signature(seen, endpoint["secret"])["type"] == "ping"


REFUSED = [
    ("ftp://example.com/hooks", "scheme"),
    ("https://user:pw@example.com/hooks", "user name or password"),
    ("http://example.com/hooks", "only https"),
    ("https://127.0.0.1/hooks", "loopback"),
    ("https://[::1]/hooks", "loopback"),
    ("https://localhost/hooks", "loopback"),
    ("https://10.1.2.3/hooks", "private"),
    ("https://192.168.0.10/hooks", "private"),
    ("https://100.64.0.1/hooks", "CGNAT"),
    ("https://169.254.169.254/latest/meta-data", "metadata"),
    ("https://[::ffff:169.254.169.254]/", "metadata"),
    ("https://0.0.0.0/hooks", "unspecified"),
    ("https://224.0.0.1/hooks", "multicast"),
    ("https://loopback.example.test/hooks", "resolves to 127.0.0.1 is a loopback address"),
    ("https://nowhere.example.test/hooks", "does not resolve"),
]


def test_urls_the_policy_refuses_are_refused_at_creation_with_the_reason(strict_deck: Deck) -> None:
    names = {"loopback.example.test": "127.0.0.1", "public.example.test": "93.184.215.14"}
    strict_deck.services.webhooks.policy.names = NamesResolver(names)
    with strict_deck.client() as client:
        for url, reason in REFUSED:
            response = client.post("/api/webhooks", json={"url": url, "events": ["version.created"]})
            assert response.status_code == 400, (url, response.text)
            assert reason in response.json()["error"]["message"], (url, response.text)
        unknown = client.post(
            "/api/webhooks", json={"url": "https://public.example.test/", "events": ["nope"]}
        )
        assert unknown.status_code == 422 and "version.created" in unknown.json()["error"]["message"]
        assert client.get("/api/webhooks").json()["data"] == []  # nothing refused was stored

        created = add_endpoint(client, "https://public.example.test/hooks", ["version.created"])
        moved = client.patch(f"/api/webhooks/{created['id']}", json={"url": "https://10.0.0.8/hooks"})
        assert moved.status_code == 400 and "private" in moved.json()["error"]["message"]


def test_a_name_that_turns_private_after_creation_is_refused_at_delivery(strict_deck: Deck) -> None:
    """DNS rebinding: the name is checked where the connection is made, not only when stored."""
    resolver = NamesResolver({"rebind.example.test": "93.184.215.14"})
    strict_deck.services.webhooks.policy.names = resolver
    with receiver() as hook, strict_deck.client() as client:
        endpoint = add_endpoint(client, f"https://rebind.example.test:{hook.port}/hooks", ["version.created"])
        resolver.names["rebind.example.test"] = "127.0.0.1"
        answer = client.post(f"/api/webhooks/{endpoint['id']}/ping").json()
        (tried,) = answer["tries"]
        assert tried["status_code"] is None
        assert "resolves to 127.0.0.1 is a loopback address" in tried["error"]
        assert hook.seen == []


def test_the_secret_is_shown_once_and_never_logged(deck: Deck, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with receiver() as hook, deck.client() as client:
        endpoint = add_endpoint(client, hook.url, ["version.created"])
        secret = endpoint["secret"]
        answers = [
            client.get("/api/webhooks"),
            client.get(f"/api/webhooks/{endpoint['id']}"),
            client.patch(f"/api/webhooks/{endpoint['id']}", json={"enabled": False}),
            client.patch(f"/api/webhooks/{endpoint['id']}", json={"enabled": True, "description": "again"}),
            client.post(f"/api/webhooks/{endpoint['id']}/ping"),
            client.get(f"/api/webhooks/{endpoint['id']}/deliveries"),
        ]
        for answer in answers:
            assert answer.status_code == 200, answer.text
            assert secret not in answer.text and "secret" not in answer.json()
        assert answers[2].json()["enabled"] is False and answers[3].json()["description"] == "again"

        rotated = client.post(f"/api/webhooks/{endpoint['id']}/rotate-secret").json()
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
        client.post(f"/api/webhooks/{endpoint['id']}/ping")
        first, second = hook.wait_for(2)
        check_signature(first, secret)
        check_signature(second, rotated["secret"])  # signed with the new secret from now on

        stored = deck.live.call(lambda: _stored_secrets(deck.services.db))
        assert secret not in stored and rotated["secret"] not in stored  # encrypted at rest

        assert client.delete(f"/api/webhooks/{endpoint['id']}").status_code == 204
        assert client.get(f"/api/webhooks/{endpoint['id']}").status_code == 404
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "webhook" in logged and secret not in logged and rotated["secret"] not in logged


async def _stored_secrets(db: AsyncEngine) -> str:
    async with db.connect() as conn:
        return " ".join(
            str(v) for v in (await conn.execute(sa.text("SELECT secret FROM webhook_endpoints"))).scalars()
        )


def test_read_keys_list_endpoints_but_cannot_change_them(deck: Deck) -> None:
    with deck.client() as client:
        key = client.post("/api/keys", json={"name": "reader", "scopes": ["read"]}).json()["api_key"]
    with deck.client(key) as reader:
        assert reader.get("/api/webhooks").status_code == 200
        refused = reader.post(
            "/api/webhooks", json={"url": "https://example.com/", "events": ["version.created"]}
        )
        assert refused.status_code == 403


@pytest.mark.parametrize(
    ("address", "private_allowed"),
    [
        ("127.0.0.1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", True),
        ("fd00::1", True),
        ("100.64.1.1", True),
        ("169.254.169.254", False),
        ("fd00:ec2::254", False),
        ("100.100.100.200", False),
        ("fe80::1", False),
        ("0.0.0.0", False),
        ("ff02::1", False),
    ],
)
def test_addresses_refused_in_production_and_in_development(address: str, private_allowed: bool) -> None:
    parsed = ipaddress.ip_address(address)
    assert address_problem(parsed) is not None
    assert (address_problem(parsed, allow_private=True) is None) == private_allowed
    assert address_problem(ipaddress.ip_address("93.184.215.14")) is None


async def test_migration_0013_downgrades_and_upgrades(engine: AsyncEngine, database_url: str) -> None:
    def to(revision: str, down: bool = False) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["database_url"] = normalize_url(database_url)
        (command.downgrade if down else command.upgrade)(config, revision)

    async def tables() -> set[str]:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        return {n for n in names if n.startswith("webhook_")}

    expected = {"webhook_endpoints", "webhook_deliveries", "webhook_attempts"}
    assert await tables() == expected
    await asyncio.to_thread(to, "0012", True)
    assert await tables() == set()
    await asyncio.to_thread(to, "head")
    assert await tables() == expected
