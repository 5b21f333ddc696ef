"""`promptdeck workspace list|create|rename|archive|restore`: the instance's workspaces, each a
thin call to the admin API (`PROMPTDECK_URL`, and in `PROMPTDECK_API_KEY` an instance
administrator's key: the one `promptdeck init` printed)."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from promptdeck.cli_lifecycle import Check, Fail, Server


def register(app: typer.Typer, server: Server, check: Check, fail: Fail) -> None:
    """Add the `workspace` command group to the `promptdeck` command."""
    group = typer.Typer(help="Workspaces: create, rename, archive and restore (instance administrators).")
    app.add_typer(group, name="workspace")
    out = Console(soft_wrap=True)

    def call(method: str, path: str, **kwargs: Any) -> Any:
        with server() as http:
            return check(http.request(method, path, **kwargs))

    def said(workspace: dict[str, Any]) -> str:
        state = f"archived {workspace['archived_at']}" if workspace["archived_at"] else "active"
        return f"{workspace['id']} {workspace['name']!r} ({state})"

    @group.command("list")
    def list_() -> None:
        """Every workspace, archived ones included; `*` marks the key's own."""
        own = call("GET", "/api/workspace")["id"]
        table = Table("", "id", "name", "created", "archived")
        for w in call("GET", "/api/workspaces")["data"]:
            table.add_row(
                "*" if w["id"] == own else "", w["id"], w["name"], w["created_at"], w["archived_at"] or ""
            )
        out.print(table)

    @group.command()
    def create(name: str = typer.Argument(..., help="The new workspace's name.")) -> None:
        """Create a workspace; prints an admin key for it, which is shown this once."""
        created = call("POST", "/api/workspaces", json={"name": name})
        out.print(f"created {said(created)}", highlight=False)
        out.print(
            f"admin key for it (shown once; PROMPTDECK_API_KEY to work in it): {created['admin_key']}",
            highlight=False,
        )

    @group.command()
    def rename(
        workspace: str = typer.Argument(..., help="The workspace's id."),
        name: str = typer.Argument(..., help="Its new name."),
    ) -> None:
        """Rename a workspace."""
        out.print(f"renamed {said(call('PATCH', f'/api/workspaces/{workspace}', json={'name': name}))}")

    @group.command()
    def archive(workspace: str = typer.Argument(..., help="The workspace's id.")) -> None:
        """Archive a workspace: its keys are refused, its members cannot sign in to it; nothing is deleted."""
        out.print(f"archived {said(call('POST', f'/api/workspaces/{workspace}/archive'))}", highlight=False)

    @group.command()
    def restore(workspace: str = typer.Argument(..., help="The workspace's id.")) -> None:
        """Restore an archived workspace: its keys and members work again."""
        out.print(f"restored {said(call('POST', f'/api/workspaces/{workspace}/restore'))}", highlight=False)
