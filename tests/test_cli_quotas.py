"""`promptdeck limits ...` and `promptdeck budgets ...` of the real console script against a
live server: set, list (budgets with this period's spend), change, delete, and refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import Deck
from tests.test_cli import cli_env, fails, succeeds
from tests.test_quotas_api import write_run


def test_limits(sqlite_deck: Deck, tmp_path: Path) -> None:
    env = cli_env(
        tmp_path / "unused",
        PROMPTDECK_URL=sqlite_deck.url,
        PROMPTDECK_API_KEY=sqlite_deck.admin_key,
        COLUMNS="200",
    )
    made = succeeds(env, "limits", "set", "workspace", "--requests", "100", "--tokens", "50000")
    assert made.startswith("limit ") and made.strip().endswith("set for workspace")
    limit_id = made.split()[1]
    succeeds(env, "limits", "set", "end_user", "-r", "5")
    succeeds(env, "limits", "set", "deployment", "summarize", "-t", "2000")
    succeeds(env, "limits", "set", "workspace", "--requests", "120")  # changes the same limit

    listed = succeeds(env, "limits", "list")
    rows = [line for line in listed.splitlines() if limit_id in line]
    assert len(rows) == 1 and "120" in rows[0] and "50000" not in rows[0]
    assert "each end user" in listed and "deployment summarize" in listed and "2000" in listed

    assert "give --requests, --tokens or both" in fails(env, "limits", "set", "workspace")
    assert "no deployment 'nope'" in fails(env, "limits", "set", "deployment", "nope", "-r", "1")
    assert succeeds(env, "limits", "delete", limit_id).strip() == f"deleted limit {limit_id}"
    assert limit_id not in succeeds(env, "limits", "list")
    assert "no rate limit" in fails(env, "limits", "delete", limit_id)


def test_budgets_with_spend(sqlite_deck: Deck, tmp_path: Path) -> None:
    env = cli_env(
        tmp_path / "unused",
        PROMPTDECK_URL=sqlite_deck.url,
        PROMPTDECK_API_KEY=sqlite_deck.admin_key,
        COLUMNS="200",
    )
    write_run(sqlite_deck, datetime.now(UTC), 1.5, end_user="ann")
    made = succeeds(env, "budgets", "set", "workspace", "--usd", "20", "--period", "day")
    assert "$20.00 per day for workspace" in made
    budget_id = made.split()[1]
    succeeds(env, "budgets", "set", "end_user", "--usd", "5")  # monthly, for each end user

    listed = succeeds(env, "budgets", "list")
    (day,) = [line for line in listed.splitlines() if budget_id in line]
    assert "$20.00" in day and "$1.50" in day and "$18.50" in day
    assert "each end user (most: ann)" in listed and "$3.50" in listed
    assert "workspace spend: $1.50 today, $1.50 this month (UTC)" in listed

    assert "period" in fails(env, "budgets", "set", "workspace", "--usd", "1", "--period", "week")
    assert succeeds(env, "budgets", "delete", budget_id).strip() == f"deleted budget {budget_id}"
    assert budget_id not in succeeds(env, "budgets", "list")
