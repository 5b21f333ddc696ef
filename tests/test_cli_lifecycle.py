"""The lifecycle commands of the real `promptdeck` console script (diff, move, rollback,
history, split, stats) against a live server whose model is a fake OpenAI-compatible upstream."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, StartDeck
from tests.support.invoking import invoke
from tests.test_cli import cli_env, fails, succeeds

upstream = fake_openai.upstream
start_deck = fake_openai.start_deck


def test_diff_move_rollback_history_split_and_stats(
    upstream: FakeOpenAI, start_deck: StartDeck, tmp_path: Path
) -> None:
    deck = start_deck()
    env = cli_env(tmp_path / "unused", PROMPTDECK_URL=deck.url, PROMPTDECK_API_KEY=deck.admin_key)
    document = fake_openai.prompt_document("fast", "openai/fast")
    changed = {
        **document,
        "messages": [
            *document["messages"][:1],
            {"role": "user", "content": "Now: {{text}} for {{audience}}"},
        ],
    }
    with httpx.Client(base_url=deck.url, headers={"Authorization": f"Bearer {deck.admin_key}"}) as client:
        assert client.post("/api/push", json=changed).status_code == 200  # version 2

    diff = succeeds(env, "diff", "fast", "1", "2")
    assert "-    content: 'Summarize for {{audience}}: {{text}}'" in diff or "Summarize for" in diff
    assert diff.startswith("--- fast@1") and "+++ fast@2" in diff and diff.endswith("\n")
    assert succeeds(env, "diff", "fast", "2", "2") == "identical\n"

    assert "version 1" in succeeds(env, "move", "fast", "default", "1", "--note", "pin")
    assert "version 2" in succeeds(env, "rollback", "fast", "default")
    history = succeeds(env, "history", "fast", "default")
    assert "pin" in history and history.index("rollback") < history.index("pin")  # newest first
    assert "follows latest" not in history
    succeeds(env, "move", "fast", "default", "latest", "--note", "follow")
    assert "fast@default follows latest: each new version saved moves it" in succeeds(
        env, "history", "fast", "default"
    )
    succeeds(env, "move", "fast", "default", "2", "--note", "pin again")  # pinned again

    assert (
        succeeds(env, "split", "fast", "default", "1=3", "2=1")
        == "fast@default: version 1 75%, version 2 25%\n"
    )
    assert json.loads(succeeds(env, "split", "--json", "fast", "default", "1=50", "2=50")) == {
        "split": [{"version": 1, "weight": 50.0}, {"version": 2, "weight": 50.0}]
    }
    for user in ("u1", "u2", "u3", "u4"):
        body = {"deployment": "fast", "inputs": fake_openai.INPUTS, "user": user}
        with httpx.Client(base_url=deck.url, headers={"Authorization": f"Bearer {deck.admin_key}"}) as client:
            assert client.post("/v1/prompt/invoke", json=body).status_code == 200
    assert invoke(deck, "fast").status_code == 200
    deck.flush()
    table = succeeds(env, "stats", "fast", "default")
    assert "version" in table and "runs" in table
    assert succeeds(env, "split", "fast", "default", "off") == (
        "fast@default: no split; every call gets version 2\n"
    )

    assert "a split is VERSION=WEIGHT" in fails(env, "split", "fast", "default", "two")
    assert "a version is a number or 'latest'" in fails(env, "move", "fast", "default", "v2")
    assert "404" in fails(env, "move", "no-such-deployment", "default", "1")
