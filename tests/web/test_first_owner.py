"""`promptdeck init` creates the console's first owner with a one-time password."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import make_settings
from tests.support.live_server import start_server
from tests.test_cli import cli_env, succeeds


def test_init_creates_the_first_owner_once_and_the_one_time_password_must_be_changed(tmp_path: Path) -> None:
    env = cli_env(tmp_path) | {"PROMPTDECK_OWNER_EMAIL": "Lead@Example.com"}
    first = json.loads(succeeds(env, "init", "--json"))
    assert first["api_key"].startswith("pd_") and first["email"] == "lead@example.com"
    assert isinstance(first["password"], str) and len(first["password"]) >= 10
    again = json.loads(succeeds(env, "init", "--json", "--email", "other@example.com"))
    assert again["email"] == "lead@example.com" and again["password"] is None  # the owner existed
    assert "Console owner: lead@example.com (already exists" in succeeds(env, "init")

    live = start_server(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'promptdeck.db'}", tmp_path))
    try:
        with httpx.Client(base_url=live.url) as client:
            client.get("/sign-in")
            form = {"email": "lead@example.com", "password": first["password"]}
            signed = client.post(
                "/sign-in", data=form | {"csrf_token": client.cookies["promptdeck_form_csrf"]}
            )
            assert signed.status_code == 303 and signed.headers["location"] == "/change-password"
            cookie = signed.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
            assert client.get("/settings").headers["location"] == "/change-password"
            refused = client.get("/api/prompts")
            assert refused.status_code == 403 and "one-time password" in refused.json()["error"]["message"]
    finally:
        live.stop()
