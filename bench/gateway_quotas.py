"""`gateway_overhead.py --quotas`: promptdeck with rate limits and budgets on, counted in the
process and in Redis, beside the same promptdeck without them, in one run.

Two more `promptdeck serve`s take the plain one's core and upstream, each in a data directory of
its own: `promptdeck_quotas` counts in the process, `promptdeck_quotas_redis` in a throw-away
`redis-server` on loopback (on the generator's core, as a Redis host beside the gateway would
be). Each is given, through the admin API, the same quotas, all far above what the benchmark
sends, so that every call is counted and none is refused:

* a workspace limit and a limit for each key (requests and tokens per minute), and a limit for
  the `bench` deployment (requests per minute);
* a monthly workspace budget, with `openai/bench-model` priced by an override (a model with no
  known price is refused under a budget); the plain server gets the same price, so that what
  differs between them is the quotas alone.

Their targets are the plain ones with `_quotas` and `_quotas_redis` appended. Issue 16's goals:
less than 0.1 ms (in the process) and 0.5 ms (Redis) added to the 1-caller non-streaming p50,
and at least 90 % of the requests per second without quotas (32 callers, not streamed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway_goals import difference, ratio
from gateway_processes import api, promptdeck_server, start_redis, stop_process
from gateway_targets import DEPLOYMENT, MODEL, Target, promptdeck_target, target_name
from load_client import HOST

SERVER = "promptdeck_quotas"  # counted in the process
REDIS_SERVER = "promptdeck_quotas_redis"  # counted in Redis
SERVERS = (SERVER, REDIS_SERVER)
GOAL_ADDED_P50_MS = {SERVER: 0.1, REDIS_SERVER: 0.5}
GOAL_QUOTAS_RPS_RATIO = 0.90
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}  # USD per million tokens
FAR_ABOVE = 1_000_000_000  # per minute: never reached, so every call is counted and admitted
BUDGET_USD = 1_000_000.0  # a month: never reached (a call's worst case is well under a cent)
LIMITS = (  # (subject kind, subject, requests per minute, tokens per minute); "" = each one
    ("workspace", "", FAR_ABOVE, FAR_ABOVE),
    ("key", "", FAR_ABOVE, FAR_ABOVE),
    ("deployment", DEPLOYMENT, FAR_ABOVE, None),
)
REQUEST_WINDOWS = sum(1 for limit in LIMITS if limit[2] is not None)  # sliding-window logs per call


def quotas_name(dialect: str, server: str) -> str:
    """`promptdeck_quotas`, `promptdeck_openai_quotas_redis`, ...: the plain target's name + suffix."""
    return target_name(dialect) + server.removeprefix("promptdeck")


def price_model(port: int, admin_key: str) -> None:
    """The bench model's price, on the quotas servers and the plain one alike: pricing each run
    costs CPU of its own, which is not the quotas' cost."""
    api(port, "PUT", f"/api/prices/openai/{MODEL}", admin_key, PRICE)


def configure(port: int, admin_key: str) -> None:
    """The price, limits and budget every quotas server gets (the module's docstring)."""
    price_model(port, admin_key)
    for kind, subject, requests, tokens in LIMITS:
        body = {"subject_kind": kind, "subject": subject}
        api(
            port,
            "PUT",
            "/api/limits",
            admin_key,
            body | {"requests_per_minute": requests, "tokens_per_minute": tokens},
        )
    budget = {"subject_kind": "workspace", "subject": "", "period": "month", "amount_usd": BUDGET_USD}
    api(port, "PUT", "/api/budgets", admin_key, budget)


@dataclass
class QuotaServer:
    name: str
    pid: int
    port: int
    key: str  # invoke
    admin_key: str


@dataclass
class QuotaRun:
    servers: list[QuotaServer] = field(default_factory=list)
    redis_pid: int = 0
    redis_port: int = 0

    @property
    def redis_url(self) -> str:
        return f"redis://{HOST}:{self.redis_port}/0"


@contextlib.contextmanager
def quota_promptdecks(
    core: int | None, redis_core: int | None, upstream_port: int, data_dir: Path
) -> Iterator[QuotaRun]:
    """Redis, and the two configured promptdecks: one counting in the process, one in Redis."""
    data_dir.mkdir(parents=True, exist_ok=True)
    redis, redis_port = start_redis(redis_core, data_dir)
    run = QuotaRun(redis_pid=redis.pid, redis_port=redis_port)
    try:
        with contextlib.ExitStack() as stack:
            for name in SERVERS:
                home = data_dir / name
                home.mkdir()
                env = {"PROMPTDECK_REDIS_URL": run.redis_url} if name == REDIS_SERVER else {}
                admin: list[str] = []

                def setup(port: int, admin_key: str, admin: list[str] = admin) -> None:
                    configure(port, admin_key)
                    admin.append(admin_key)

                process, port, key = stack.enter_context(
                    promptdeck_server(core, upstream_port, home, extra_env=env, setup=setup)
                )
                run.servers.append(QuotaServer(name, process.pid, port, key, admin[0]))
            yield run
    finally:
        stop_process(redis)


def quota_targets(run: QuotaRun, dialects: list[str]) -> list[Target]:
    return [
        replace(
            promptdeck_target(server.port, server.key, dialect),
            name=quotas_name(dialect, server.name),
            server=server.name,
        )
        for server in run.servers
        for dialect in dialects
    ]


def quota_state(run: QuotaRun) -> dict[str, Any]:
    """After the load: each server's workspace budget (its spend proves every call was counted
    and settled) and what Redis holds (the request windows' sizes, its memory)."""
    state: dict[str, Any] = {}
    for server in run.servers:
        budgets = api(server.port, "GET", "/api/budgets", server.admin_key)["data"]
        state[server.name] = {
            "runs": api(server.port, "GET", "/api/health").get("writer", {}).get("written"),
            "budget": [
                {k: b.get(k) for k in ("subject_kind", "period", "amount_usd", "spent_usd", "reserved_usd")}
                for b in budgets
            ],
        }
    state["redis"] = redis_state(run.redis_url)
    return state


def redis_state(url: str) -> dict[str, Any]:
    import redis  # redis-py, installed with promptdeck

    client = redis.Redis.from_url(url)
    try:
        windows = {
            key.decode().rsplit(":", 2)[-2]: client.zcard(key)
            for key in client.scan_iter("promptdeck:quota:requests:*")
        }
        memory = client.info("memory")
        commands = client.info("commandstats")
        return {
            "request_window_entries": windows,
            "commands": {
                name.removeprefix("cmdstat_"): {"calls": c["calls"], "us_per_call": c["usec_per_call"]}
                for name, c in commands.items()
            },
            "used_memory_mb": round(memory["used_memory"] / 2**20, 1),
            "used_memory_peak_mb": round(memory["used_memory_peak"] / 2**20, 1),
        }
    finally:
        client.close()


def quotas_figures(
    results: dict[str, dict[str, Any]], dialects: list[str], state: dict[str, Any]
) -> dict[str, Any]:
    """Per quotas target, what the quotas add over the same dialect without them, and the goals
    (each the worst dialect's figure)."""
    by_target: dict[str, dict[str, Any]] = {}
    for server in SERVERS:
        for dialect in dialects:
            name, plain = quotas_name(dialect, server), target_name(dialect)
            by_target[name] = {
                "added_p50_ms_1_caller": difference(results, "single_plain", "p50_ms", name, plain),
                "rps_ratio": ratio(results, "concurrent_plain", "rps", name, plain),
                "sustained_rps_ratio": ratio(results, "concurrent_plain", "rps_sustained", name, plain),
                "cpu_capacity_ratio": ratio(results, "concurrent_plain", "cpu_capacity_rps", name, plain),
                "added_cpu_us_per_request": difference(
                    results, "concurrent_plain", "server_cpu_us_per_request", name, plain
                ),
                "streams_ratio": ratio(results, "concurrent_stream", "rps", name, plain),
                "errors": sum(phase.get(name, {}).get("errors", 0) for phase in results.values()),
            }
    goals: dict[str, Any] = {}
    for server in SERVERS:
        mine = [f for name, f in by_target.items() if name.endswith(server.removeprefix("promptdeck"))]
        added = [f["added_p50_ms_1_caller"] for f in mine if f["added_p50_ms_1_caller"] is not None]
        ratios = [f["sustained_rps_ratio"] for f in mine if f["sustained_rps_ratio"] is not None]
        errors = sum(f["errors"] for f in mine)
        worst_added, worst_ratio = (max(added) if added else None), (min(ratios) if ratios else None)
        goals[server] = {
            "added_p50_ms_1_caller": {
                "goal": f"< {GOAL_ADDED_P50_MS[server]} ms",
                "measured": worst_added,
                "met": worst_added is not None and worst_added < GOAL_ADDED_P50_MS[server] and not errors,
            },
            "sustained_rps_ratio": {
                "goal": f">= {GOAL_QUOTAS_RPS_RATIO}",
                "measured": worst_ratio,
                "met": worst_ratio is not None and worst_ratio >= GOAL_QUOTAS_RPS_RATIO and not errors,
            },
            "errors": errors,
        }
    return {"by_target": by_target, "goals": goals, "state": state}


def quotas_markdown(figures: dict[str, Any]) -> str:
    lines = [
        "| quotas on, over the same dialect off | 1-caller p50 added (ms) | sustained req/s ratio "
        "| req/s ratio to the last answer | CPU/request added (µs) | CPU capacity ratio "
        "| streams/s ratio | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in figures["by_target"].items():
        cells = [f[k] for k in ("added_p50_ms_1_caller", "sustained_rps_ratio", "rps_ratio")]
        cells.append(f["added_cpu_us_per_request"])
        cells += [f[k] for k in ("cpu_capacity_ratio", "streams_ratio", "errors")]
        lines.append(f"| {name} | " + " | ".join("—" if c is None else str(c) for c in cells) + " |")
    lines.append("")
    for server, goal in figures["goals"].items():
        for key, what in (
            ("added_p50_ms_1_caller", "1-caller p50 added"),
            ("sustained_rps_ratio", "sustained req/s ratio"),
        ):
            met = "met" if goal[key]["met"] else "**not met**"
            lines.append(f"* {server}: {what} {goal[key]['measured']} (goal {goal[key]['goal']}): {met}")
    state = figures["state"]
    redis = state.get("redis", {})
    runs = state.get(REDIS_SERVER, {}).get("runs")
    scripts = redis.get("commands", {}).get("evalsha", {})
    calls = scripts.get("calls")
    per_run = f" ({calls / runs:.2f} per run)" if runs and calls else ""
    lines.append(
        f"* Redis after the run: {redis.get('used_memory_peak_mb')} MB at peak; {calls} scripts "
        f"for {runs} runs{per_run}, {scripts.get('us_per_call')} µs each in Redis; request windows "
        "(sliding-window logs) hold "
        f"{redis.get('request_window_entries')} entries"
    )
    for server in SERVERS:
        for budget in state.get(server, {}).get("budget", []):
            lines.append(
                f"* {server}: {budget['subject_kind']} {budget['period']}ly budget: "
                f"${budget['spent_usd']} spent, ${budget['reserved_usd']} reserved"
            )
    return "\n".join(lines)
