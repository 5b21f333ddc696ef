"""The console's pages with 100,000 runs in the database: the server time each page costs
(its `Server-Timing: app;dur=` header) and the time the client waits for it, against the goal
"every page renders in under 200 ms server time with 100,000 runs in the database".

For each database (SQLite; with `--postgres` also a throw-away PostgreSQL), in a fresh one
migrated to the newest schema:

* pushes the example prompt (examples/summarize.yaml) and a prompt per deployment of the
  synthetic log (bench/run_log_data.py), three versions each, with variants pointing at them;
* writes N runs (default 100,000 over 60 days) through the real RunWriter, so the usage
  rollups and end users' totals are the writer's own (bench/run_log_scale.py's `write_log`);
* starts a real promptdeck server on it (tests/support/live_server.py), signs in as a console
  owner through the sign-in form, and reads every console page: after two untimed requests,
  `--repetitions` timed ones (default 15), reporting p50 and p95 of both times.

    .venv/bin/python bench/console_pages.py [--quick] [--runs N] [--postgres] [--save-baseline]

Prints a Markdown table per database, writes bench/results/console_pages_latest.json and
compares it with bench/results/console_pages_baseline.json. See bench/README.md and
docs/performance.md ("Console pages").
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime as dt
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # tests.support: the throw-away PostgreSQL, the live server, signing in
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import yaml  # noqa: E402
from tests.support.console_sign_in import signed_in_client  # noqa: E402
from tests.support.live_server import start_server  # noqa: E402

from cpu_meter import background_load  # noqa: E402
from figures import NS_PER_MS, change_cell, fmt, percentile  # noqa: E402
from promptdeck.config import Settings  # noqa: E402
from promptdeck.store.console_members import MemberStore  # noqa: E402
from promptdeck.store.database import create_engine  # noqa: E402
from promptdeck.store.prompt_sync import PromptSync  # noqa: E402
from run_log_data import DEPLOYMENTS, MODELS, RunFactory, Shape  # noqa: E402
from run_log_scale import Database, LoadMeter, bootstrap, open_database, settle, write_log  # noqa: E402
from run_meta import cpu_model, git_state  # noqa: E402

RESULTS = HERE / "results"
EXAMPLE = ROOT / "examples" / "summarize.yaml"
GOAL_MS = 200.0  # server time, p95
EMAIL = "bench-owner@example.com"
PASSWORD = "console pages bench"
VERSIONS = 3
WARM_UPS = 2

# (name, path): the placeholders are filled in once the runs are written (see `urls`).
PAGES: tuple[tuple[str, str], ...] = (
    ("prompts", "/prompts"),
    ("prompt", "/prompts/support-answer"),
    ("prompt versions", "/prompts/support-answer/versions"),
    ("prompt diff", "/prompts/support-answer/diff?from=1&to=3"),
    ("deployments", "/deployments"),
    ("deployment", "/deployments/summarize"),
    ("deployment (busiest)", "/deployments/support-answer"),
    ("logs", "/logs"),
    ("logs, 24 h", "/logs?range=24h"),
    ("logs, deployment", "/logs?deployment=support-answer"),
    ("logs, 4 filters", "/logs?deployment=translate&variant=canary&status=error&range=7d"),
    ("logs, errors", "/logs?status=error"),
    ("logs, end user", "/logs?user=user-00001"),
    ("logs, model", "/logs?model=openai%2Fgpt-4o"),
    ("logs, provider", "/logs?provider=anthropic&range=7d"),
    ("logs, version", "/logs?deployment=summarize&version=2"),
    ("logs, meta plan", "/logs?meta=plan%3Denterprise"),
    ("logs, meta customer 30d", "/logs?meta=customer_id%3Dcus_00003&range=30d"),
    ("logs, meta env + feature", "/logs?meta=env%3Dprod&meta=feature"),
    ("logs, search", "/logs?q=refund&range=24h"),
    ("logs, older page", "{older}"),
    ("run", "/logs/{run_id}"),
    ("tail", "/logs/tail?after={tail_after}"),
    ("tail, filtered", "/logs/tail?after={tail_after}&deployment=summarize&status=success"),
    ("usage", "/usage"),
    ("usage 7d by model", "/usage?range=7d&group_by=model"),
    ("usage 30d by deployment", "/usage?range=30d&group_by=deployment"),
    ("usage 30d by user", "/usage?range=30d&group_by=user"),
    ("usage 30d by version", "/usage?range=30d&group_by=version"),
    ("usage 30d by metadata", "/usage?range=30d&group_by=metadata&meta_key=customer_id"),
    (
        "usage 7d hourly by variant",
        "/usage?range=custom&from={week_ago}&to={today}&bucket=hour&group_by=variant",
    ),
    ("usage 30d by provider", "/usage?range=custom&from={month_ago}&to={today}&bucket=day&group_by=provider"),
    ("users", "/users"),
    ("users by runs", "/users?sort=runs&order=desc"),
    ("users search", "/users?sort=cost&order=asc&q=user-01"),
    ("user", "/users/user-00000"),
    ("settings", "/settings"),
)
# Pages that must list runs: a fast empty page would not measure anything.
MUST_LIST_RUNS = {"logs", "logs, deployment", "logs, model", "logs, provider", "logs, meta plan"}
SERVER_TIMING = re.compile(r"(?:^|,)\s*app;dur=([0-9.]+)")


# ── the data ────────────────────────────────────────────────────────────────────────────────────


def prompt_documents() -> list[dict[str, Any]]:
    """The example prompt, then one prompt per deployment of the synthetic log (the example is
    the `summarize` one), each in VERSIONS versions; the variants the log uses point at them."""
    example = yaml.safe_load(EXAMPLE.read_text())
    documents = []
    for index, (name, _, default_model, other_model) in enumerate(DEPLOYMENTS):
        for version in range(1, VERSIONS + 1):
            document = copy.deepcopy(example)
            document["prompt"] = name
            if (name, version) != ("summarize", 1):  # v1 of summarize is the example as it is
                document["model"] = MODELS[default_model if version < VERSIONS else other_model][0]
                document["messages"][0]["content"] = (
                    f"You are the {name} assistant (revision {version}). Answer briefly and politely."
                )
                document["params"] = {"temperature": round(0.1 * version, 1), "max_tokens": 128 * version}
            variants: dict[str, Any] = {"default": max(1, version - 1), "canary": "latest"}
            if index % 3 != 2:
                variants["experiment"] = "latest"
            document["deploy"] = {name: variants}
            documents.append(document)
    return documents


async def seed(url: str) -> tuple[str, str]:
    """Migrate, push the prompts and add the console owner the pages are read as."""
    workspace_id, _ = await bootstrap(url)
    engine = create_engine(url)
    try:
        sync = PromptSync(engine)
        for document in prompt_documents():
            await sync.push(workspace_id, document, actor="console-pages-bench")
        await MemberStore(engine).create(workspace_id, EMAIL, PASSWORD, "owner")
    finally:
        await engine.dispose()
    return workspace_id, EMAIL


# ── measuring ───────────────────────────────────────────────────────────────────────────────────


def urls(client: httpx.Client, now: dt.datetime) -> list[tuple[str, str]]:
    """PAGES with their placeholders filled in: a run and the second page of runs from the
    first page of the logs, the dates of the custom usage ranges, live tail's "after"."""
    first = client.get("/logs")
    if first.status_code != 200 or 'data-id="' not in first.text:
        raise SystemExit(f"/logs lists no runs: HTTP {first.status_code}: {first.text[:300]}")
    run_id = first.text.split('data-id="', 1)[1].split('"', 1)[0]
    older = first.text.split('rel="next"', 1)[0].rsplit('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    today = now.date()
    values = {
        "run_id": quote(run_id, safe=""),
        "older": older,
        "tail_after": quote((now - dt.timedelta(minutes=1)).isoformat()),
        "today": today.isoformat(),
        "week_ago": (today - dt.timedelta(days=6)).isoformat(),
        "month_ago": (today - dt.timedelta(days=30)).isoformat(),
    }
    return [(name, path.format(**values)) for name, path in PAGES]


def server_ms(response: httpx.Response) -> float:
    found = SERVER_TIMING.search(response.headers.get("server-timing", ""))
    if not found:
        raise SystemExit(f"{response.url}: no Server-Timing header (app;dur=...) in the answer")
    return float(found.group(1))


def get(client: httpx.Client, name: str, url: str) -> tuple[httpx.Response, int]:
    started = time.perf_counter_ns()
    response = client.get(url)
    took = time.perf_counter_ns() - started
    if response.status_code != 200:
        raise SystemExit(f"{name} ({url}): HTTP {response.status_code}: {response.text[:500]}")
    if name in MUST_LIST_RUNS and 'data-id="' not in response.text:
        raise SystemExit(f"{name} ({url}): the page shows no run")
    return response, took


def measure_page(client: httpx.Client, name: str, url: str, repetitions: int) -> dict[str, Any]:
    """Untimed warm-ups (templates compiled, caches and prepared statements filled), then the
    timed requests, one after the other."""
    for _ in range(WARM_UPS):
        get(client, name, url)
    server: list[int] = []
    wall: list[int] = []
    size = 0
    for _ in range(repetitions):
        response, took = get(client, name, url)
        server.append(round(server_ms(response) * NS_PER_MS))
        wall.append(took)
        size = len(response.content)
    server.sort()
    wall.sort()
    return {
        "url": url,
        "repetitions": repetitions,
        "server_p50_ms": percentile(server, 50),
        "server_p95_ms": percentile(server, 95),
        "server_max_ms": percentile(server, 100),
        "wall_p50_ms": percentile(wall, 50),
        "wall_p95_ms": percentile(wall, 95),
        "bytes": size,
    }


@dataclass(frozen=True)
class Options:
    runs: int
    repetitions: int
    quick: bool


def measure(kind: str, options: Options, log: Callable[[str], None]) -> dict[str, Any]:
    started = time.perf_counter()
    with open_database(kind) as database:
        workspace_id, email = asyncio.run(seed(database.url))
        shape = Shape(workspace_id, dt.datetime.now(dt.UTC))
        log(f"{kind}: writing {options.runs:,} runs through the run writer")
        factory = RunFactory(shape, options.runs)
        writing = asyncio.run(write_log(database, factory, max(1000, options.runs // 20), (500,), log))
        asyncio.run(settle(database))
        log(f"{kind}: reading {len(PAGES)} console pages through a live server")
        pages, load = read_pages(database, email, shape.now, options.repetitions, log)
        return {
            "meta": {
                "database": kind,
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                **git_state(),
                "cpu": cpu_model(),
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "database_settings": database.settings,
                "quick": options.quick,
                "runs": options.runs,
                "repetitions": options.repetitions,
                "writer_runs_per_s": writing["by_batch_size"]["500"]["runs_per_s"],
                "duration_s": round(time.perf_counter() - started, 1),
            },
            "pages": pages,
            "query_load": load,
        }


def read_pages(
    database: Database, email: str, now: dt.datetime, repetitions: int, log: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, float]]:
    server = start_server(Settings(data_dir=database.data_dir, database_url=database.url))
    meter = LoadMeter(database.server_pids)
    pages: dict[str, Any] = {}
    try:
        with signed_in_client(server.url, email, PASSWORD, timeout=120) as (client, _):
            meter.start()
            for name, url in urls(client, now):
                pages[name] = found = measure_page(client, name, url, repetitions)
                log(
                    f"  {name:<28} server p50 {found['server_p50_ms']:>8.1f} ms  p95 "
                    f"{found['server_p95_ms']:>8.1f} ms   wall p50 {found['wall_p50_ms']:>8.1f} ms"
                )
            load = meter.stop()
    finally:
        server.stop()
    return pages, load


# ── the report ──────────────────────────────────────────────────────────────────────────────────


def met(page: dict[str, Any]) -> bool:
    return bool(page["server_p95_ms"] < GOAL_MS)


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [
        f"### {meta['database']}: {meta['runs']:,} runs, {meta['repetitions']} requests per page",
        "",
        "| page | server p50 (ms) | server p95 (ms) | wall p50 (ms) | wall p95 (ms) | KiB "
        f"| p95 < {GOAL_MS:.0f} ms |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, page in report["pages"].items():
        lines.append(
            f"| {name} | {fmt(page['server_p50_ms'])} | {fmt(page['server_p95_ms'])} "
            f"| {fmt(page['wall_p50_ms'])} | {fmt(page['wall_p95_ms'])} | {page['bytes'] / 1024:,.0f} "
            f"| {'yes' if met(page) else 'NO'} |"
        )
    missed = [name for name, page in report["pages"].items() if not met(page)]
    lines += [
        "",
        f"Goal (server time p95 < {GOAL_MS:.0f} ms): "
        + (f"met by all {len(report['pages'])} pages." if not missed else f"missed by {', '.join(missed)}."),
        f"Other load on the machine while reading: {report['query_load']['other_load_cores']} cores.",
    ]
    return "\n".join(lines)


def compare(latest: dict[str, Any], baseline: dict[str, Any]) -> str:
    kind = latest["meta"]["database"]
    if not baseline:
        return f"No {kind} baseline in console_pages_baseline.json yet."
    then = baseline["meta"]
    lines = [f"Compared with the {kind} baseline of {then['date']} ({then['runs']:,} runs):"]
    if baseline["meta"]["runs"] != latest["meta"]["runs"]:
        lines.append(f"(this run wrote {latest['meta']['runs']:,} runs: the figures are not comparable)")
    lines += ["", "| page | server p95 baseline | latest | change |", "|---|---:|---:|---:|"]
    for name, page in latest["pages"].items():
        old = baseline.get("pages", {}).get(name, {}).get("server_p95_ms")
        new = page["server_p95_ms"]
        if old is None:
            lines.append(f"| {name} | — | {fmt(new)} | |")
            continue
        lines.append(f"| {name} | {fmt(old)} | {fmt(new)} | {change_cell(old, new, 'lower', min_delta=2)} |")
    return "\n".join(lines)


# ── main ────────────────────────────────────────────────────────────────────────────────────────


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Console pages' server and wall time with many runs.")
    parser.add_argument("--quick", action="store_true", help="10,000 runs instead of 100,000")
    parser.add_argument("--runs", type=int, help="runs to write (default 100,000; quick 10,000)")
    parser.add_argument("--postgres", action="store_true", help="also on a throw-away PostgreSQL")
    parser.add_argument("--repetitions", type=int, default=15, help="timed requests per page (at least 10)")
    parser.add_argument("--save-baseline", action="store_true", help="also write the baseline")
    parser.add_argument("--output", type=Path, default=RESULTS / "console_pages_latest.json")
    parser.add_argument("--baseline", type=Path, default=RESULTS / "console_pages_baseline.json")
    args = parser.parse_args(argv)
    if args.repetitions < 10:
        parser.error("--repetitions: at least 10, for a p95 that means something")
    if args.runs is not None and args.runs < 1000:
        parser.error("--runs: at least 1,000 (the logs pages need a second page of runs)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(args.runs or (10_000 if args.quick else 100_000), args.repetitions, args.quick)
    kinds = ("sqlite", "postgres") if args.postgres else ("sqlite",)
    idle = background_load()
    on = ", ".join(kinds)
    print(f"promptdeck console pages: {options.runs:,} runs on {on}; other load now {idle} cores")
    if idle > 0.2:
        print("warning: other processes keep the machine busy: figures will be slower and noisier")

    def log(line: str) -> None:
        print(line, flush=True)

    baseline = json.loads(args.baseline.read_text()) if args.baseline.exists() else {}
    latest: dict[str, Any] = {}
    for kind in kinds:
        report = measure(kind, options, log)
        report["meta"]["background_load_cores"] = idle
        latest[kind] = report
        print()
        print(markdown(report))
        print()
        print(compare(report, baseline.get(kind, {})))
        print()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(latest, indent=2, default=str) + "\n")
    print(f"written: {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    if args.save_baseline:
        args.baseline.write_text(json.dumps(baseline | latest, indent=2, default=str) + "\n")
        print(f"baseline saved: {args.baseline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
