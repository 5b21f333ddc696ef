"""CLI commands for a prompt's lifecycle — diff, move, rollback, history, split, stats —
each a thin call to the admin API (`PROMPTDECK_URL`, `PROMPTDECK_API_KEY`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    import httpx

Server = Callable[[], AbstractContextManager["httpx.Client"]]  # ends the command if unreachable
Check = Callable[["httpx.Response"], Any]
Fail = Callable[[str], None]


def register(app: typer.Typer, server: Server, check: Check, fail: Fail) -> None:
    """Add the lifecycle commands to the `promptdeck` command."""
    out = Console(soft_wrap=True)

    def call(method: str, path: str, **kwargs: Any) -> Any:
        with server() as http:
            return check(http.request(method, path, **kwargs))

    def variant_path(deployment: str, variant: str) -> str:
        return f"/api/deployments/{deployment}/variants/{variant}"

    @app.command()
    def diff(
        prompt: str = typer.Argument(..., help="The prompt's slug."),
        old: int = typer.Argument(..., help="A version number."),
        new: int = typer.Argument(..., help="Another version number."),
    ) -> None:
        """Show what changed between two versions of a prompt, as a unified diff."""
        answer = call("GET", f"/api/prompts/{prompt}/diff", params={"from": old, "to": new})
        text = "identical" if answer["identical"] else answer["diff"]
        print(text, end="" if text.endswith("\n") else "\n")

    @app.command()
    def move(
        deployment: str = typer.Argument(...),
        variant: str = typer.Argument(...),
        version: str = typer.Argument(..., help="A version number, or 'latest' to follow the newest."),
        note: str = typer.Option("", help="Why, kept in the variant's history."),
        force: bool = typer.Option(False, help="Move even if recent callers' inputs say it is unsafe."),
        reason: str = typer.Option("", help="With --force: why the move is safe anyway."),
    ) -> None:
        """Point a variant at a version (refused when recent callers would break, unless forced)."""
        target: int | str = "latest" if version == "latest" else _number(version, fail)
        body = {"version": target, "note": note, "force": force, "reason": reason}
        answer = call("PUT", variant_path(deployment, variant), json=body)
        out.print(f"{deployment}@{variant} -> version {answer['variants'][variant]['version']}")

    @app.command()
    def rollback(
        deployment: str = typer.Argument(...),
        variant: str = typer.Argument(...),
        note: str = typer.Option("", help="Why, kept in the variant's history."),
        force: bool = typer.Option(False, help="Roll back even if recent callers' inputs say it is unsafe."),
        reason: str = typer.Option("", help="With --force: why the rollback is safe anyway."),
    ) -> None:
        """Move a variant back to the version it served before its last move (refused when recent
        callers would break, unless forced)."""
        body = {"note": note, "force": force, "reason": reason}
        answer = call("POST", variant_path(deployment, variant) + "/rollback", json=body)
        out.print(f"{deployment}@{variant} -> version {answer['variants'][variant]['version']}")

    @app.command()
    def history(deployment: str = typer.Argument(...), variant: str = typer.Argument(...)) -> None:
        """A variant's moves, newest first."""
        from rich.table import Table

        table = Table("when", "who", "from", "to", "note")
        history = call("GET", variant_path(deployment, variant) + "/history")
        for move_ in history["data"]:
            from_version = "" if move_["from_version"] is None else str(move_["from_version"])
            table.add_row(
                move_["created_at"], move_["actor"], from_version, str(move_["to_version"]), move_["note"]
            )
        out.print(table)
        if history.get("follows_latest"):
            out.print(
                f"{deployment}@{variant} follows latest: each new version saved moves it", highlight=False
            )

    @app.command()
    def split(
        deployment: str = typer.Argument(...),
        variant: str = typer.Argument(...),
        weights: list[str] = typer.Argument(..., help="VERSION=WEIGHT pairs, e.g. 2=90 3=10; 'off' to stop."),
        as_json: bool = typer.Option(False, "--json", help='Print {"split": [...] or null} only.'),
        force: bool = typer.Option(False, help="Add a version the release check refuses anyway."),
        reason: str = typer.Option("", help="With --force: why it is safe (kept in the history)."),
    ) -> None:
        """Split a variant's traffic across versions by weight (sticky per end user). A version the
        split adds passes the release check (docs/releases.md)."""
        arms = [] if weights == ["off"] else [_arm(item, fail) for item in weights]
        current = call("GET", f"/api/deployments/{deployment}")["variants"].get(variant)
        if current is None:
            fail(f"deployment {deployment!r} has no variant {variant!r}")
        kept = ("timeouts", "retries", "fallbacks", "cache", "gates")
        config = {k: v for k, v in current["config"].items() if k in kept}
        answer = call(
            "PUT",
            variant_path(deployment, variant) + "/config",
            json={**config, "split": arms},
            params={"force": "true" if force else "false", "reason": reason},
        )
        served = answer["variants"][variant]
        split = served["config"].get("split") or None
        if as_json:
            print(json.dumps({"split": split}))
        else:
            out.print(
                _describe_split(f"{deployment}@{variant}", split, served.get("version")), highlight=False
            )

    @app.command()
    def stats(deployment: str = typer.Argument(...), variant: str = typer.Argument(...)) -> None:
        """Per version of a variant: runs, error rate, latency, tokens, cost, feedback."""
        from rich.table import Table

        table = Table("version", "runs", "error rate", "mean latency ms", "tokens", "cost USD", "feedback")
        for row in call("GET", variant_path(deployment, variant) + "/stats")["data"]:
            table.add_row(
                str(row["version"]),
                str(row["runs"]),
                f"{row['error_rate']:.1%}",
                "" if row["mean_latency_ms"] is None else f"{row['mean_latency_ms']:.0f}",
                str(row.get("input_tokens", 0) + row.get("output_tokens", 0)),
                "" if row.get("cost") is None else f"{row['cost']:.6f}",
                "" if row.get("mean_feedback_score") is None else f"{row['mean_feedback_score']:.2f}",
            )
        out.print(table)


def _describe_split(target: str, split: list[dict[str, Any]] | None, version: Any) -> str:
    """`fast@default: version 1 50%, version 2 50%`, each arm's share of the total weight."""
    if not split:
        return f"{target}: no split; every call gets version {version}"
    total = sum(arm["weight"] for arm in split)
    return f"{target}: " + ", ".join(f"version {a['version']} {a['weight'] / total:.0%}" for a in split)


def _number(text: str, fail: Fail) -> int:
    if not text.isdigit():
        fail(f"a version is a number or 'latest'; got {text!r}")
    return int(text)


def _arm(item: str, fail: Fail) -> dict[str, Any]:
    version, sep, weight = item.partition("=")
    try:
        if not sep:
            raise ValueError
        return {"version": int(version), "weight": float(weight)}
    except ValueError:
        fail(f"a split is VERSION=WEIGHT, e.g. 2=90; got {item!r}")
        raise  # fail() exits; this keeps the type checker sure of it
