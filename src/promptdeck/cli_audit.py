"""`promptdeck audit [filters] [--json]` and `promptdeck audit export FILE`: the workspace's audit
log of admin actions, each a thin call to `GET /api/audit` (`PROMPTDECK_URL`, `PROMPTDECK_API_KEY`,
an admin key)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from promptdeck.cli_lifecycle import Check, Fail, Server

ACTION_HELP = "An action (key.created), or a prefix ending in . (key.) for every action of a kind."
SINCE_HELP = "ISO 8601 time: actions at or after it."


def register(app: typer.Typer, server: Server, check: Check, fail: Fail) -> None:
    """Add the `audit` command group to the `promptdeck` command."""
    audit = typer.Typer(help="The audit log: who changed what, from where, when, before and after.")
    app.add_typer(audit, name="audit")
    out = Console(soft_wrap=True)

    @audit.callback(invoke_without_command=True)
    def list_(
        ctx: typer.Context,
        action: str = typer.Option("", help=ACTION_HELP),
        actor: str = typer.Option("", help="A member's email or a key's name."),
        target_type: str = typer.Option("", help="key, credential, member, variant, webhook, ..."),
        since: str = typer.Option("", help=SINCE_HELP),
        until: str = typer.Option("", help="ISO 8601 time: actions before it."),
        limit: int = typer.Option(50, min=1, max=500, help="How many actions, newest first."),
        as_json: bool = typer.Option(False, "--json", help="Print the actions as a JSON array."),
    ) -> None:
        """The newest admin actions, filtered (`promptdeck audit export FILE` writes them all)."""
        if ctx.invoked_subcommand is not None:
            return
        params: dict[str, Any] = {"action": action, "actor": actor, "target_type": target_type}
        params |= {"since": since, "until": until, "limit": limit}
        with server() as http:
            found = check(http.get("/api/audit", params={k: v for k, v in params.items() if v}))
        if as_json:
            print(json.dumps(found["data"], indent=2, ensure_ascii=False))
            return
        table = Table("when", "who", "from", "action", "target", "before", "after")
        for e in found["data"]:
            table.add_row(
                e["created_at"],
                e["actor"],
                e["address"],
                e["action"],
                f"{e['target_type']} {e['target_id']}",
                _short(e["before"]),
                _short(e["after"]),
            )
        out.print(table)
        if found["next_cursor"]:
            out.print(f"(more: --limit above {limit}, or `promptdeck audit export FILE`)", highlight=False)

    @audit.command()
    def export(
        file: Path = typer.Argument(..., dir_okay=False, help="The file to write (.jsonl or .csv)."),
        format: str = typer.Option("", help="jsonl or csv (default: from the file's suffix, else jsonl)."),
        action: str = typer.Option("", help=ACTION_HELP),
        since: str = typer.Option("", help=SINCE_HELP),
    ) -> None:
        """Every matching admin action, newest first, streamed into FILE."""
        chosen = format or ("csv" if file.suffix.lower() == ".csv" else "jsonl")
        params = {k: v for k, v in {"format": chosen, "action": action, "since": since}.items() if v}
        lines = 0
        with server() as http, http.stream("GET", "/api/audit/export", params=params) as response:
            if response.status_code >= 400:
                response.read()
                check(response)
            with file.open("wb") as written:
                for chunk in response.iter_bytes():
                    written.write(chunk)
                    lines += chunk.count(b"\n")
        counted = lines - 1 if chosen == "csv" else lines  # a CSV's header line is no action
        out.print(f"exported {counted} audit event(s) to {file}", highlight=False)


def _short(value: Any, most: int = 60) -> str:
    """A before or after value on one table line."""
    if value is None:
        return ""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= most else text[: most - 1] + "…"
