"""`promptdeck limits list|set|delete` and `promptdeck budgets list|set|delete`: a workspace's
rate limits and budgets (with each budget's spend this period), each a thin call to the admin
API (`PROMPTDECK_URL`, `PROMPTDECK_API_KEY`)."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from promptdeck.cli_lifecycle import Check, Fail, Server

KINDS = "workspace, key, deployment or end_user"
SUBJECT_HELP = (
    "The key id, deployment name or end user; leave it out for the workspace, or for each key, "
    "deployment or end user."
)


def subject_text(kind: str, subject: str) -> str:
    if kind == "workspace":
        return "workspace"
    return f"{kind} {subject}" if subject else f"each {kind.replace('_', ' ')}"


def dollars(amount: float) -> str:
    return f"${amount:,.2f}" if amount >= 0.01 or amount == 0 else f"${amount:.6f}"


def register(app: typer.Typer, server: Server, check: Check, fail: Fail) -> None:
    """Add the `limits` and `budgets` command groups to the `promptdeck` command."""
    limits = typer.Typer(
        help="Rate limits: requests and tokens per minute, per workspace, key, deployment or end user."
    )
    budgets = typer.Typer(
        help="Budgets: USD per UTC day or month, per workspace, key, deployment or end user."
    )
    app.add_typer(limits, name="limits")
    app.add_typer(budgets, name="budgets")
    out = Console(soft_wrap=True)

    def call(method: str, path: str, **kwargs: Any) -> Any:
        with server() as http:
            response = http.request(method, path, **kwargs)
            return None if response.status_code == 204 else check(response)

    @limits.command("list")
    def list_limits() -> None:
        """This workspace's rate limits."""
        table = Table("id", "applies to", "requests/min", "tokens/min")
        for x in call("GET", "/api/limits")["data"]:
            table.add_row(
                x["id"],
                subject_text(x["subject_kind"], x["subject"]),
                str(x["requests_per_minute"] or "-"),
                str(x["tokens_per_minute"] or "-"),
            )
        out.print(table)

    @limits.command("set")
    def set_limit(
        kind: str = typer.Argument(..., help=f"What it limits: {KINDS}."),
        subject: str = typer.Argument("", help=SUBJECT_HELP),
        requests: int | None = typer.Option(None, "--requests", "-r", min=1, help="Requests per minute."),
        tokens: int | None = typer.Option(
            None, "--tokens", "-t", min=1, help="Tokens per minute (real usage)."
        ),
    ) -> None:
        """Set a rate limit; setting the same subject again replaces its figures."""
        if requests is None and tokens is None:
            fail("give --requests, --tokens or both")
        body = {
            "subject_kind": kind,
            "subject": subject,
            "requests_per_minute": requests,
            "tokens_per_minute": tokens,
        }
        made = call("PUT", "/api/limits", json=body)
        out.print(
            f"limit {made['id']} set for {subject_text(made['subject_kind'], made['subject'])}",
            highlight=False,
        )

    @limits.command("delete")
    def delete_limit(
        limit: str = typer.Argument(..., help="The limit's id (see `promptdeck limits list`)."),
    ) -> None:
        """Remove a rate limit."""
        call("DELETE", f"/api/limits/{limit}")
        out.print(f"deleted limit {limit}")

    @budgets.command("list")
    def list_budgets() -> None:
        """The budgets with this period's spend, and the workspace's spend today and this month."""
        answer = call("GET", "/api/budgets")
        table = Table("id", "applies to", "period", "budget", "spent", "in flight", "remaining")
        for b in answer["data"]:
            applies = subject_text(b["subject_kind"], b["subject"])
            if b["subject"] == "" and b["subject_kind"] != "workspace" and b["shown_subject"]:
                applies += f" (most: {b['shown_subject']})"
            table.add_row(
                b["id"],
                applies,
                b["period"],
                dollars(b["amount_usd"]),
                dollars(b["spent_usd"]),
                dollars(b["reserved_usd"]),
                dollars(b["remaining_usd"]),
            )
        out.print(table)
        spent = answer["workspace"]
        out.print(
            f"workspace spend: {dollars(spent['day']['spent_usd'])} today, "
            f"{dollars(spent['month']['spent_usd'])} this month (UTC)",
            highlight=False,
        )

    @budgets.command("set")
    def set_budget(
        kind: str = typer.Argument(..., help=f"What it limits: {KINDS}."),
        subject: str = typer.Argument("", help=SUBJECT_HELP),
        usd: float = typer.Option(..., "--usd", min=0, help="US dollars per period (0: free models only)."),
        period: str = typer.Option("month", "--period", "-p", help="day or month (UTC)."),
    ) -> None:
        """Set a budget; setting the same subject and period again replaces its amount."""
        body = {"subject_kind": kind, "subject": subject, "period": period, "amount_usd": usd}
        made = call("PUT", "/api/budgets", json=body)
        out.print(
            f"budget {made['id']} set: {dollars(made['amount_usd'])} per {made['period']} for "
            f"{subject_text(made['subject_kind'], made['subject'])}",
            highlight=False,
        )

    @budgets.command("delete")
    def delete_budget(
        budget: str = typer.Argument(..., help="The budget's id (see `promptdeck budgets list`)."),
    ) -> None:
        """Remove a budget."""
        call("DELETE", f"/api/budgets/{budget}")
        out.print(f"deleted budget {budget}")
