"""`promptdeck webhooks list|add|remove|deliveries|ping`: a workspace's webhook endpoints, each a
thin call to the admin API (`PROMPTDECK_URL`, `PROMPTDECK_API_KEY`)."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from promptdeck.cli_lifecycle import Check, Fail, Server


def register(app: typer.Typer, server: Server, check: Check, fail: Fail) -> None:
    """Add the `webhooks` command group to the `promptdeck` command."""
    hooks = typer.Typer(help="Webhook endpoints: signed POSTs when versions, variants or deployments change.")
    app.add_typer(hooks, name="webhooks")
    out = Console(soft_wrap=True)

    def call(method: str, path: str, **kwargs: Any) -> Any:
        with server() as http:
            response = http.request(method, path, **kwargs)
            return None if response.status_code == 204 else check(response)

    @hooks.command("list")
    def list_() -> None:
        """This workspace's endpoints (never their secrets)."""
        table = Table("id", "url", "events", "enabled", "description")
        for e in call("GET", "/api/webhooks")["data"]:
            table.add_row(
                e["id"], e["url"], ", ".join(e["events"]), "yes" if e["enabled"] else "no", e["description"]
            )
        out.print(table)

    @hooks.command()
    def add(
        url: str = typer.Argument(..., help="An https URL that receives the events."),
        event: list[str] = typer.Option(
            ..., "--event", "-e", help="An event type to send (repeat): version.created, variant.moved, ..."
        ),
        description: str = typer.Option("", help="What the endpoint is for."),
    ) -> None:
        """Add an endpoint; prints its signing secret, which is shown this once."""
        created = call(
            "POST", "/api/webhooks", json={"url": url, "events": event, "description": description}
        )
        out.print(f"added {created['id']} -> {created['url']}")
        out.print(
            f"signing secret (shown once, keep it in your receiver): {created['secret']}", highlight=False
        )

    @hooks.command()
    def remove(endpoint: str = typer.Argument(..., help="The endpoint's id.")) -> None:
        """Remove an endpoint and its delivery log."""
        call("DELETE", f"/api/webhooks/{endpoint}")
        out.print(f"removed {endpoint}")

    @hooks.command()
    def deliveries(
        endpoint: str = typer.Argument(..., help="The endpoint's id."),
        limit: int = typer.Option(20, min=1, max=500, help="How many deliveries, newest first."),
    ) -> None:
        """The endpoint's delivery log: each delivery and every try's status or error."""
        table = Table("created", "event", "state", "try", "status", "ms", "next try")
        for d in call("GET", f"/api/webhooks/{endpoint}/deliveries", params={"limit": limit})["data"]:
            for t in d["tries"] or [{"attempt": "", "status_code": None, "error": "", "duration_ms": ""}]:
                status = str(t["status_code"]) if t["status_code"] is not None else (t["error"] or "")
                table.add_row(
                    d["created_at"],
                    d["event_type"],
                    d["state"],
                    str(t["attempt"]),
                    status,
                    str(t["duration_ms"]),
                    t.get("next_attempt_at") or "",
                )
        out.print(table)

    @hooks.command()
    def ping(endpoint: str = typer.Argument(..., help="The endpoint's id.")) -> None:
        """Send a signed `ping` event now and show how the endpoint answered."""
        answer = call("POST", f"/api/webhooks/{endpoint}/ping")
        tried = answer["tries"][0] if answer["tries"] else {}
        status = tried.get("status_code") or tried.get("error") or "not tried"
        out.print(f"ping {answer['state']}: {status}", highlight=False)
        if answer["state"] == "failed" or (answer["state"] == "pending" and tried):
            fail(
                f"the endpoint did not accept the ping ({status}); it is retried: "
                "see `promptdeck webhooks deliveries`"
            )
