"""`promptdeck keys ...` of the real console script against a live server: create a narrowed,
expiring key, list it, rotate it (the old key keeps its grace period) and revoke it."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Deck
from tests.test_cli import cli_env, fails, succeeds


def works(deck: Deck, secret: str) -> int:
    with deck.client(secret) as client:
        return client.get("/v1/models").status_code


def test_create_list_rotate_revoke(sqlite_deck: Deck, tmp_path: Path) -> None:
    deck = sqlite_deck
    env = cli_env(
        tmp_path / "unused", PROMPTDECK_URL=deck.url, PROMPTDECK_API_KEY=deck.admin_key, COLUMNS="220"
    )
    created = succeeds(
        env, "keys", "create", "--name", "ci-bot", "-s", "invoke", "-d", "summarize", "--expires-in-days", "7"
    )
    key_id = created.split()[1]
    secret = created.rsplit(": ", 1)[1].strip()
    assert secret.startswith("pd_") and works(deck, secret) == 200

    listed = succeeds(env, "keys", "list")
    row = next(line for line in listed.splitlines() if key_id in line)
    assert "ci-bot" in row and "summarize" in row and "active" in row and secret not in listed

    rotated = succeeds(env, "keys", "rotate", key_id, "--grace-seconds", "3600")
    new_secret = rotated.rsplit(": ", 1)[1].strip()
    assert f"rotated {key_id} -> " in rotated and "the old key works until" in rotated
    assert works(deck, secret) == 200 and works(deck, new_secret) == 200
    row = next(line for line in succeeds(env, "keys", "list").splitlines() if key_id in line)
    assert "rotated" in row

    assert f"revoked {key_id}" in succeeds(env, "keys", "revoke", key_id)
    assert works(deck, secret) == 401 and works(deck, new_secret) == 200
    assert "no deployment named 'nope'" in fails(env, "keys", "create", "-d", "nope")
    assert "no API key" in fails(env, "keys", "revoke", "nope")
