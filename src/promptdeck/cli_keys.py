"""`promptdeck keys list|create|revoke|rotate`: a workspace's API keys, each a thin call to the
admin API (`PROMPTDECK_URL`, `PROMPTDECK_API_KEY`, a key with the `admin` scope)."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from promptdeck.cli_lifecycle import Check, Fail, Server


def register(app: typer.Typer, server: Server, check: Check, fail: Fail) -> None:
    """Add the `keys` command group to the `promptdeck` command."""
    keys = typer.Typer(help="API keys: scopes, the deployments a key may call, expiry and rotation.")
    app.add_typer(keys, name="keys")
    out = Console(soft_wrap=True)

    def call(method: str, path: str, **kwargs: Any) -> Any:
        with server() as http:
            return check(http.request(method, path, **kwargs))

    def shown_once(key: dict[str, Any]) -> None:
        out.print(f"API key (shown once, keep it secret): {key['api_key']}", highlight=False)

    @keys.command("list")
    def list_() -> None:
        """This workspace's keys (never their secrets)."""
        table = Table("id", "name", "prefix", "scopes", "deployments", "expires", "status")
        data = call("GET", "/api/keys")["data"]
        rotated = {k["rotated_from"] for k in data if k["rotated_from"]}
        for k in data:
            status = "revoked" if k["revoked_at"] else "rotated" if k["id"] in rotated else "active"
            table.add_row(
                k["id"],
                k["name"],
                k["prefix"] + "…",
                ",".join(k["scopes"]),
                "all" if k["deployments"] is None else ",".join(k["deployments"]),
                k["expires_at"] or "never",
                status,
            )
        out.print(table)

    @keys.command()
    def create(
        name: str = typer.Option("key", help="What the key is for."),
        scope: list[str] = typer.Option(
            ["invoke"], "--scope", "-s", help="invoke, read or admin (repeat for several)."
        ),
        deployment: list[str] = typer.Option(
            [], "--deployment", "-d", help="A deployment the key may call (repeat); none: every one."
        ),
        expires_in_days: float | None = typer.Option(None, min=0.001, help="Refused after this many days."),
        expires_at: str | None = typer.Option(None, help="Or: refused from this ISO time on (with offset)."),
    ) -> None:
        """Create a key; prints its secret, which is shown this once."""
        body: dict[str, Any] = {"name": name, "scopes": scope, "deployments": deployment or None}
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        if expires_at is not None:
            body["expires_at"] = expires_at
        created = call("POST", "/api/keys", json=body)
        out.print(f"created {created['id']} ({created['name']}, {','.join(created['scopes'])})")
        shown_once(created)

    @keys.command()
    def revoke(key: str = typer.Argument(..., help="The key's id.")) -> None:
        """Revoke a key: refused from now on."""
        revoked = call("POST", f"/api/keys/{key}/revoke")
        out.print(f"revoked {revoked['id']} ({revoked['prefix']}…)")

    @keys.command()
    def rotate(
        key: str = typer.Argument(..., help="The key's id."),
        grace_seconds: int | None = typer.Option(
            None, min=0, help="How long the old key keeps working (default 86400: 24 hours)."
        ),
        expires_in_days: float | None = typer.Option(None, min=0.001, help="The new key's own expiry."),
    ) -> None:
        """A new key with the same name, scopes and deployments; prints its secret once. The old
        key keeps working until the grace period ends."""
        body: dict[str, Any] = {}
        if grace_seconds is not None:
            body["grace_seconds"] = grace_seconds
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        rotated = call("POST", f"/api/keys/{key}/rotate", json=body)
        old = rotated["old_key"]
        out.print(f"rotated {old['id']} -> {rotated['id']}; the old key works until {old['expires_at']}")
        shown_once(rotated)
