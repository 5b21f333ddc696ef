"""`promptdeck webhooks ...` of the real console script against a live server that may deliver to
a receiver on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Deck
from tests.support.webhook_receiver import receiver
from tests.test_cli import cli_env, fails, succeeds
from tests.test_webhooks import check_signature, start_deck


@pytest.fixture
def deck(tmp_path: Path) -> Iterator[Deck]:
    deck = start_deck(
        f"sqlite+aiosqlite:///{tmp_path / 'promptdeck.db'}", tmp_path, webhooks_allow_private=True
    )
    yield deck
    deck.live.stop()


def test_add_list_ping_deliveries_remove(deck: Deck, tmp_path: Path) -> None:
    env = cli_env(
        tmp_path / "unused", PROMPTDECK_URL=deck.url, PROMPTDECK_API_KEY=deck.admin_key, COLUMNS="200"
    )
    with receiver() as hook:
        added = succeeds(env, "webhooks", "add", hook.url, "-e", "version.created", "-e", "variant.moved")
        endpoint = added.split()[1]
        secret = added.rsplit(": ", 1)[1].strip()
        assert secret.startswith("whsec_")

        listed = succeeds(env, "webhooks", "list")
        assert endpoint in listed and "version.created" in listed and secret not in listed

        assert succeeds(env, "webhooks", "ping", endpoint).strip() == "ping delivered: 200"
        (seen,) = hook.wait_for(1)
        assert check_signature(seen, secret)["type"] == "ping"

        hook.statuses = [500]
        deck.services.webhooks.dispatcher.delays = (60.0,)
        assert "it is retried" in fails_with_output(env, "webhooks", "ping", endpoint)
        log = succeeds(env, "webhooks", "deliveries", endpoint)
        assert "ping" in log and "delivered" in log and "pending" in log and "500" in log and "200" in log

        assert "refused" not in succeeds(env, "webhooks", "remove", endpoint)
        assert endpoint not in succeeds(env, "webhooks", "list")
        assert "no webhook endpoint" in fails(env, "webhooks", "remove", endpoint)
        assert "only https" in fails(env, "webhooks", "add", "ftp://example.com/x", "-e", "version.created")


def fails_with_output(env: dict[str, str], *args: str) -> str:
    from tests.test_cli import promptdeck

    result = promptdeck(env, *args)
    assert result.returncode == 1, result
    return result.stderr
