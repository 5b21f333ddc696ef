"""`promptdeck workspace ...` of the real console script against a live server, with the admin
key `init` made (an instance administrator's) and with a plain admin key (refused)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Deck
from tests.test_cli import cli_env, fails, succeeds


def test_list_create_rename_archive_restore(sqlite_deck: Deck, tmp_path: Path) -> None:
    deck = sqlite_deck
    env = cli_env(
        tmp_path / "unused", PROMPTDECK_URL=deck.url, PROMPTDECK_API_KEY=deck.admin_key, COLUMNS="200"
    )

    created = succeeds(env, "workspace", "create", "team search")
    assert created.startswith("created ") and "'team search' (active)" in created
    workspace = created.split()[1]
    key = created.rsplit(": ", 1)[1].strip()
    assert key.startswith("pd_")

    listed = succeeds(env, "workspace", "list")
    assert deck.workspace_id in listed and workspace in listed and "team search" in listed
    assert key not in listed

    team = env | {"PROMPTDECK_API_KEY": key}
    succeeds(team, "pull", str(tmp_path / "pulled"))
    assert list((tmp_path / "pulled").glob("*.yaml")) == []  # an empty workspace

    assert "'search' (active)" in succeeds(env, "workspace", "rename", workspace, "search")
    assert "archived" in succeeds(env, "workspace", "archive", workspace)
    assert "archived" in fails(team, "workspace", "list")  # its key is refused at once
    assert "(active)" in succeeds(env, "workspace", "restore", workspace)
    assert "instance administrator" in fails(team, "workspace", "list")  # a workspace admin only

    assert "working in this workspace" in fails(env, "workspace", "archive", deck.workspace_id)
    assert "no workspace" in fails(env, "workspace", "rename", "nope", "x")
