"""`promptdeck eval`: run an evaluation on the server with a progress bar, print its summary, and
exit non-zero when a gate fails — the step a CI job runs before a deploy (docs/evaluations.md);
`promptdeck eval compare ID ID...` shows evaluations side by side. Thin calls to the admin API
(`PROMPTDECK_URL`, `PROMPTDECK_API_KEY`)."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from promptdeck.cli_lifecycle import Check, Fail, Server

GATE_FAILED = 3  # exit code when the evaluation ran but a gate refused it (1: any other failure)
POLL_SECONDS = 0.3
UNFINISHED = ("queued", "running")
COMPARE = "compare"
CASES_SHOWN = 30


def register(app: typer.Typer, server: Server, check: Check, fail: Fail) -> None:
    """Add the `eval` command to the `promptdeck` command."""
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)

    def call(method: str, path: str, **kwargs: Any) -> Any:
        with server() as http:
            return check(http.request(method, path, **kwargs))

    @app.command("eval")
    def evaluate(
        prompt: str = typer.Argument(..., help="The prompt's slug (or `compare`, then evaluation ids)."),
        ids: list[str] = typer.Argument(None, help="With `compare`: two or more evaluation ids."),
        dataset: str = typer.Option(None, "--dataset", "-d", help="The prompt's dataset to run."),
        version: int = typer.Option(None, "--version", help="The version to evaluate."),
        deployment: str = typer.Option(None, help="With --variant: evaluate what the variant serves."),
        variant: str = typer.Option(None, help="The variant of --deployment."),
        concurrency: int = typer.Option(8, min=1, max=32, help="Calls in flight at once."),
        min_pass_rate: float = typer.Option(
            None, min=0.0, max=1.0, help="A gate of its own: fail unless this share of cases passes."
        ),
        gate_of: str = typer.Option(
            None, help="deployment/variant: also judge the version by that variant's gates."
        ),
    ) -> None:
        """Evaluate a version on a dataset; exits 3 when a gate fails (`eval compare ID ID...`
        compares evaluations instead)."""
        if prompt == COMPARE and dataset is None:
            show_comparison(ids or [])
            return
        if ids:
            fail(f"unexpected arguments: {' '.join(ids)} (only `eval compare` takes evaluation ids)")
        if dataset is None:
            fail("--dataset: name the dataset to run")
        if (version is None) == (deployment is None or variant is None) or (deployment is None) != (
            variant is None
        ):
            fail("name what to evaluate: --version N, or --deployment and --variant")
        if gate_of is not None and gate_of.count("/") != 1:
            fail("--gate-of: deployment/variant")
        target = (
            {"version": version} if version is not None else {"deployment": deployment, "variant": variant}
        )
        body = {"dataset": dataset, "concurrency": concurrency, **target}
        started = call("POST", f"/api/prompts/{prompt}/evaluations", json=body)
        evaluation = follow(started)
        print_summary(evaluation)
        if evaluation["status"] != "done":
            fail(f"the evaluation {evaluation['id']} ended {evaluation['status']}: {evaluation.get('error')}")
        problems = judge(evaluation, min_pass_rate, gate_of)
        for problem in problems:
            err.print(f"[red]gate failed[/red]: {escape(problem)}")
        if problems:
            raise typer.Exit(GATE_FAILED)
        if min_pass_rate is not None or gate_of is not None:
            out.print(f"evaluation {evaluation['id']}: every gate passed", highlight=False)

    def follow(evaluation: dict[str, Any]) -> dict[str, Any]:
        """Poll the evaluation with a progress bar until it ends; Ctrl-C cancels it."""
        path = f"/api/evaluations/{evaluation['id']}"
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=False) as progress:
            task = progress.add_task(f"evaluation {evaluation['id']}", total=evaluation["total"])
            try:
                while evaluation["status"] in UNFINISHED:
                    time.sleep(POLL_SECONDS)
                    evaluation = call("GET", path)
                    progress.update(task, completed=evaluation["completed"])
            except KeyboardInterrupt:
                evaluation = call("POST", path + "/cancel")
            progress.update(task, completed=evaluation["completed"])
        return evaluation

    def judge(evaluation: dict[str, Any], min_pass_rate: float | None, gate_of: str | None) -> list[str]:
        problems: list[str] = []
        rate = (evaluation["summary"] or {}).get("pass_rate")
        if min_pass_rate is not None and (rate is None or rate < min_pass_rate):
            problems.append(
                f"{percent(rate)} of the cases passed; --min-pass-rate needs {percent(min_pass_rate)}"
            )
        if gate_of is not None:
            deployment, variant = gate_of.split("/")
            answer = call(
                "POST",
                f"/api/deployments/{deployment}/variants/{variant}/gates/check",
                json={"version": evaluation["version"]},
            )
            problems += [failure["problem"] for failure in answer["failures"]]
        return problems

    def print_summary(evaluation: dict[str, Any]) -> None:
        summary = evaluation.get("summary") or {}
        target = evaluation["target"]
        what = "draft" if "draft" in target else f"version {evaluation['version']}"
        if "deployment" in target:
            what += f" ({target['deployment']}/{target['variant']})"
        out.print(
            f"evaluation {evaluation['id']}: {escape(evaluation['prompt'])} {what} on dataset "
            f"{escape(str(evaluation['dataset']))}: {evaluation['status']}",
            highlight=False,
        )
        if not summary:
            return
        table = Table("cases", "passed", "failed", "errored", "pass rate", "cost (USD)", "p50 ms", "p95 ms")
        table.add_row(
            str(summary["cases"]),
            str(summary["passed"]),
            str(summary["failed"]),
            str(summary["errored"]),
            percent(summary["pass_rate"]),
            f"{summary['cost']:.6f}",
            number(summary["latency_p50_ms"]),
            number(summary["latency_p95_ms"]),
        )
        out.print(table)
        if summary["evaluators"]:
            per = Table("evaluator", "pass rate", "mean score", "errors")
            for name, figures in summary["evaluators"].items():
                per.add_row(
                    escape(name),
                    percent(figures["pass_rate"]),
                    number(figures["mean_score"], 3),
                    str(figures["errors"]),
                )
            out.print(per)

    def show_comparison(ids: list[str]) -> None:
        if len(ids) < 2:
            fail("eval compare: give two or more evaluation ids")
        answer = call("GET", "/api/evaluations/compare", params={"ids": ",".join(ids)})
        table = Table(
            "evaluation", "version", "pass rate", "cost (USD)", "p50 ms", "p95 ms", "evaluators (mean score)"
        )
        for e in answer["evaluations"]:
            means = ", ".join(f"{n}: {number(f['mean_score'], 3)}" for n, f in e["evaluators"].items())
            version = "draft" if e["version"] is None else str(e["version"])
            table.add_row(
                e["id"],
                version,
                percent(e["pass_rate"]),
                f"{e['cost']:.6f}",
                number(e["latency_p50_ms"]),
                number(e["latency_p95_ms"]),
                escape(means),
            )
        out.print(table)
        changes = answer["changes"]
        out.print(
            f"{changes['regressed']} case(s) went from pass to fail, {changes['fixed']} from fail to pass, "
            f"{changes['changed']} changed otherwise",
            highlight=False,
        )
        cases = Table("case", "change", *[e["id"][-8:] for e in answer["evaluations"]])
        for case in [c for c in answer["cases"] if c["change"] != "same"][:CASES_SHOWN]:
            cells = [r["status"] if r else "-" for r in case["results"]]
            cases.add_row(f"#{case['position']}", case["change"], *cells)
        if cases.row_count:
            out.print(cases)


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
