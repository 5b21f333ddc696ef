"""When the Redis that counts limits and budgets goes away mid-run, each feature does what its
setting says (docs/governance.md, "Shared state and Redis"): by default limits let calls through
with a warning in the log and budgets refuse them; the opposite settings do the opposite.

A live server on the fake upstream and a real redis-server, stopped halfway through: deployment
`slow` has a rate limit and no budget, deployment `fast` (priced) a budget and no limit, so each
call meets exactly one feature."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
import redis

from promptdeck.engine.quota_redis import PREFIX
from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import INPUTS, FakeOpenAI, StartDeck, expect_hive_error, push_prompt
from tests.support.redis_server import RedisServer, redis_server

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck

PRICE = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}


class Warnings(logging.Handler):
    """The server's quota warnings (its `promptdeck` loggers do not reach pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings() -> Iterator[Warnings]:
    handler, logger = Warnings(), logging.getLogger("promptdeck.quotas")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def invoke(deck: Deck, deployment: str) -> httpx.Response:
    with deck.client() as client:
        return client.post("/v1/prompt/invoke", json={"deployment": deployment, "inputs": INPUTS})


def governed(start_deck: StartDeck, server: RedisServer, **policy: str) -> Deck:
    """A server counting in `server`, with a limit on `slow` and a budget on `fast`, each of
    which has taken one call while Redis was there."""
    deck = start_deck(redis_url=server.url, **policy)
    push_prompt(deck.url, deck.admin_key, "slow", "openai/slow")
    with deck.client() as client:
        client.put("/api/prices/openai/fast", json=PRICE).raise_for_status()
    quotas, workspace = deck.services.quotas, deck.workspace_id
    deck.live.call(lambda: quotas.set_limit(workspace, "deployment", "slow", 100, None))
    deck.live.call(lambda: quotas.set_budget(workspace, "deployment", "fast", "day", 10.0))
    assert invoke(deck, "slow").status_code == 200
    assert invoke(deck, "fast").status_code == 200
    with redis.Redis.from_url(server.url) as client:  # both were counted in Redis
        kinds = {key.decode().removeprefix(PREFIX).split(":")[0] for key in client.keys(PREFIX + "*")}
    assert kinds == {"requests", "budget"}
    return deck


def test_by_default_limits_fail_open_and_budgets_fail_closed(
    start_deck: StartDeck, upstream: FakeOpenAI, own_redis: RedisServer, warnings: Warnings
) -> None:
    deck = governed(start_deck, own_redis)
    own_redis.stop()
    assert invoke(deck, "slow").status_code == 200  # the limit cannot be counted: let through
    assert any("rate limits are not enforced" in m for m in warnings.messages), warnings.messages
    refused = invoke(deck, "fast")  # the budget cannot be held: refused before the upstream
    expect_hive_error(refused, 503, "quota_store_unavailable")
    assert upstream.count("fast") == 1 and upstream.count("slow") == 2


def test_the_opposite_settings_do_the_opposite(
    start_deck: StartDeck, upstream: FakeOpenAI, own_redis: RedisServer, warnings: Warnings
) -> None:
    deck = governed(start_deck, own_redis, limits_on_store_failure="closed", budgets_on_store_failure="open")
    own_redis.stop()
    expect_hive_error(invoke(deck, "slow"), 503, "quota_store_unavailable")
    assert invoke(deck, "fast").status_code == 200
    assert any("budgets are not enforced" in m for m in warnings.messages), warnings.messages
    assert upstream.count("fast") == 2 and upstream.count("slow") == 1
