"""How much latency promptdeck adds, and how many requests per second one core serves.

Starts a fake OpenAI-compatible upstream (bench/fake_upstream.py), a featureless aiohttp proxy
in front of it (bench/reference_proxy.py, the reference) and a real `promptdeck serve`, then
drives the same load at (a) the upstream directly, (b) the proxy and (c) promptdeck through
each dialect asked for (`--dialects`; Fetch Hive's `POST /v1/prompt/invoke` is `promptdeck`):

* 1 caller, non-streaming: latency p50/p99;
* 1 caller, streaming: time to the first event of the body p50/p99;
* N callers (32), non-streaming: requests/s, latency p50/p99, CPU per request;
* N callers (32), streaming: streams/s, CPU per stream and per streamed event.

The upstream and this load generator share core 0; the proxy and promptdeck take turns on
core 1 (`taskset`). Every phase has a fixed request count and a time cap; only 127.0.0.1 is
contacted. Modules: load_client (the generator), cpu_meter, gateway_targets (the requests and
their checks), gateway_processes, gateway_goals, gateway_report.

    .venv/bin/python bench/gateway_overhead.py [--quick] [--dialects fetchhive,openai] [--save-baseline]
    .venv/bin/python bench/gateway_overhead.py --quick --traces   # traces on beside traces off
    .venv/bin/python bench/gateway_overhead.py --quick --metrics-off   # metrics on beside off
    .venv/bin/python bench/gateway_overhead.py --quick --quotas   # limits and budgets on beside off

Prints Markdown tables, writes bench/results/latest.json and compares it with
bench/results/baseline.json when that exists. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpu_meter import CpuMeter, background_load
from fake_upstream import run_fast
from figures import NS_PER_MS, percentile
from gateway_goals import REFERENCES, add_event_cpu, goals, versus_proxy
from gateway_metrics import SERVER as UNMETERED
from gateway_metrics import metrics_figures, metrics_markdown, unmetered_promptdeck, unmetered_targets
from gateway_processes import (
    GENERATOR_CORE,
    PROMPTDECK_CORE,
    Profiler,
    promptdeck_server,
    start_proxy,
    start_upstream,
    stop_process,
    writer_drained,
    writer_metrics,
)
from gateway_quotas import SERVERS as QUOTAS
from gateway_quotas import (
    price_model,
    quota_promptdecks,
    quota_state,
    quota_targets,
    quotas_figures,
    quotas_markdown,
)
from gateway_report import PHASES, compare, markdown
from gateway_targets import (
    DIALECTS,
    Target,
    direct_target,
    promptdeck_target,
    proxy_target,
    sanity_check,
)
from gateway_traces import SERVER as TRACED
from gateway_traces import sink_stats, traced_promptdeck, traced_targets, traces_figures, traces_markdown
from load_client import SSE, Tally, close_all, closed_loop, connect
from memory_meter import memory_mb
from quota_window import window_costs, window_markdown
from run_meta import ROOT, run_meta

RESULTS = Path(__file__).resolve().parent / "results"
QUICK_DIALECTS = "fetchhive,openai"  # a full run measures every dialect
PROMPTDECKS = ("promptdeck", TRACED, UNMETERED, *QUOTAS)  # the servers that have a run writer


@dataclass
class Plan:
    """Request counts per phase (warm-up requests are not measured) and the time cap of each."""

    single: int
    single_warmup: int
    concurrent: int
    concurrent_warmup: int
    callers: int
    cap_s: float
    concurrent_stream: int = 0
    concurrent_stream_warmup: int = 0

    def phase(self, phase: str) -> tuple[bool, int, int, int]:
        """(streaming, callers, measured requests, warm-up requests) of a phase."""
        if phase == "concurrent_plain":
            return False, self.callers, self.concurrent, self.concurrent_warmup
        if phase == "concurrent_stream":
            return True, self.callers, self.concurrent_stream, self.concurrent_stream_warmup
        return phase == "single_stream", 1, self.single, self.single_warmup


def summary(tally: Tally, streaming: bool) -> dict[str, Any]:
    latencies = sorted(tally.latencies)
    figures: dict[str, Any] = {
        "requests": len(latencies),
        "errors": tally.errors,
        "elapsed_s": round(tally.elapsed_s, 3),
        "rps": round(len(latencies) / tally.elapsed_s, 1) if tally.elapsed_s else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": percentile(latencies, 100),
        "mean_ms": round(sum(latencies) / len(latencies) / NS_PER_MS, 3) if latencies else None,
        "capped": tally.capped,
    }
    if streaming:
        firsts = sorted(tally.firsts)
        figures |= {"ttfb_p50_ms": percentile(firsts, 50), "ttfb_p99_ms": percentile(firsts, 99)}
    if tally.error_samples:
        figures["error_samples"] = tally.error_samples
    return figures


async def run_phase(
    target: Target,
    phase: str,
    plan: Plan,
    meter: CpuMeter,
    log: Callable[[str], None],
    profiler: Profiler | None = None,
) -> dict[str, Any]:
    streaming, callers, count, warmup = plan.phase(phase)
    request = target.streaming if streaming else target.plain
    framing = target.framing if streaming else SSE
    connections = [await connect(target.port) for _ in range(callers)]
    try:
        await closed_loop(target.port, connections, request, warmup, plan.cap_s, framing)
        gc.collect()
        gc.disable()  # a collection in the generator would show up as a latency spike
        if profiler is not None:
            profiler.start(phase if target.name == "promptdeck" else f"{phase}-{target.dialect}")
        meter.start()
        tally = await closed_loop(target.port, connections, request, count, plan.cap_s, framing)
        cpu = meter.stop(len(tally.latencies))
    finally:
        gc.enable()
        if profiler is not None:
            profiler.stop()
        close_all(connections)
    figures = summary(tally, streaming) | {"callers": callers, "cpu": cpu}
    cpu_us = figures["server_cpu_us_per_request"] = cpu.get(f"{target.server}_cpu_us_per_request")
    figures["rps_sustained"] = figures["rps"]
    if target.server in PROMPTDECKS and cpu_us is not None and tally.latencies:
        cpu_us = figures["server_cpu_us_per_request"] = await with_drain(target, figures, meter)
    if target.server != "upstream":
        if cpu_us:  # what one core would serve if the server had it alone: robust to other load
            figures["cpu_capacity_rps"] = round(1e6 / cpu_us, 1)
        figures["memory"] = memory_mb(meter.pids[target.server])
    if target.server in PROMPTDECKS:
        figures["writer"] = await writer_metrics(target.port)
    shown = f"ttfb p50 {figures['ttfb_p50_ms']} ms" if streaming else f"p50 {figures['p50_ms']} ms"
    log(
        f"  {phase:<17} {target.name:<20} {figures['requests']:>6} req in {figures['elapsed_s']:>6.2f} s"
        f"  {figures['rps']:>8.1f} req/s  {shown}  {cpu_us} µs CPU/req  errors {figures['errors']}"
    )
    return figures


async def with_drain(target: Target, figures: dict[str, Any], meter: CpuMeter) -> float:
    """The server's CPU per request once the runs the phase queued are written, and beside it
    `rps_sustained`: the requests over the phase's time plus that drain's CPU.

    Writing a run is part of serving it, but a writer that falls behind writes the rest of a
    phase's runs after its last answer: more or less of them from one run to the next, so a
    figure that stops at the last answer moves by several per cent. The server's core does
    nothing else while it drains, so its CPU then is the time the phase would have taken.
    """
    answered_ns = meter.spent_ns(target.server)
    await writer_drained(target.port)
    drain_ns = meter.spent_ns(target.server) - answered_ns
    requests = figures["requests"]
    figures["drain_cpu_us_per_request"] = round(drain_ns / 1000 / requests, 1)
    figures["rps_sustained"] = round(requests / (figures["elapsed_s"] + drain_ns / 1e9), 1)
    return float(round(figures["server_cpu_us_per_request"] + drain_ns / 1000 / requests, 1))


async def run_all(
    targets: list[Target],
    plan: Plan,
    pids: dict[str, int],
    phases: tuple[str, ...],
    profiler: Profiler | None,
    log: Callable[[str], None],
    deltas: int,
    rounds: int = 1,
) -> dict[str, dict[str, Any]]:
    await sanity_check(*targets, deltas=deltas)
    meter = CpuMeter(pids)
    results: dict[str, dict[str, Any]] = {phase: {} for phase in PHASES}
    promptdeck_ports = {t.port for t in targets if t.server in PROMPTDECKS}
    for phase in phases:
        runs: dict[str, list[dict[str, Any]]] = {target.name: [] for target in targets}
        for round_ in range(rounds):
            # every other round in reverse order, so that no target always goes first or last
            for target in targets if round_ % 2 == 0 else targets[::-1]:
                for port in promptdeck_ports:  # idle while the next target is measured on its core
                    await writer_drained(port)
                watch = profiler if target.server == "promptdeck" and round_ == 0 else None
                runs[target.name].append(await run_phase(target, phase, plan, meter, log, watch))
        for name, measured in runs.items():
            results[phase][name] = median_round(measured)
    return results


def median_round(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """Of one target's rounds, the one with the median sustained requests/s, with every round's
    figures beside it (`rounds_rps`, `rounds_rps_sustained`): a ratio between two targets then
    rests on more than one draw."""
    ranked = sorted(measured, key=lambda result: result["rps_sustained"])
    chosen = dict(ranked[(len(ranked) - 1) // 2])
    if len(measured) > 1:
        chosen["rounds_rps"] = [result["rps"] for result in measured]
        chosen["rounds_rps_sustained"] = [result["rps_sustained"] for result in measured]
    return chosen


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="promptdeck's added latency and throughput against a fake upstream on loopback, "
        "beside a featureless reference proxy."
    )
    parser.add_argument("--quick", action="store_true", help="small counts: done in about a minute")
    parser.add_argument("--requests", type=int, help="measured requests per 1-caller phase (default 3000)")
    parser.add_argument("--concurrent-requests", type=int, help="measured requests, N-caller phase (20000)")
    parser.add_argument("--concurrent-streams", type=int, help="measured streams, N-caller phase (5000)")
    parser.add_argument("--callers", type=int, default=32, help="concurrent callers (default 32)")
    parser.add_argument("--cap", type=float, help="time cap per phase in seconds (default 30; quick 8)")
    parser.add_argument("--deltas", type=int, default=20, help="content deltas per upstream stream (20)")
    parser.add_argument("--upstream-delay-ms", type=float, default=0.0, help="pause between streamed deltas")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (e.g. to profile one)",
    )
    parser.add_argument(
        "--dialects",
        help=f"promptdeck's dialects to measure, comma-separated, of {','.join(DIALECTS)} "
        f"(default: all; with --quick {QUICK_DIALECTS})",
    )
    parser.add_argument("--direct-only", action="store_true", help="only calibrate generator + upstream")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each target this many times per phase, every other round in reverse order, and "
        "keep each target's median round (for on/off ratios: 5 or more)",
    )
    parser.add_argument(
        "--traces",
        action="store_true",
        help="also measure a promptdeck exporting OpenTelemetry traces to a loopback OTLP receiver "
        "(targets <name>_traces; gateway_traces.py)",
    )
    parser.add_argument(
        "--metrics-off",
        action="store_true",
        help="also measure a promptdeck with PROMPTDECK_METRICS=off (targets <name>_metrics_off; "
        "gateway_metrics.py): the cost of /metrics",
    )
    parser.add_argument(
        "--quotas",
        action="store_true",
        help="also measure promptdeck with rate limits and budgets counted in the process and in a "
        "loopback Redis (targets <name>_quotas, <name>_quotas_redis; gateway_quotas.py)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--priority",
        type=int,
        default=10,
        help="run every process at nice -N when root, against other load (0: off; default 10)",
    )
    parser.add_argument("--save-baseline", action="store_true", help="also write bench/results/baseline.json")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--baseline", type=Path, default=RESULTS / "baseline.json")
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="FILE",
        help="profile promptdeck with py-spy in each of its phases: FILE-<phase>[-<dialect>].svg (.json: "
        "speedscope, .txt: collapsed stacks); the CPU py-spy takes makes those runs' figures a little worse",
    )
    args = parser.parse_args(argv)
    chosen = args.dialects or (QUICK_DIALECTS if args.quick else ",".join(DIALECTS))
    args.dialect_list = [d for d in chosen.split(",") if d]
    unknown = set(args.dialect_list) - set(DIALECTS)
    if unknown or not args.dialect_list:
        parser.error(f"--dialects: {', '.join(sorted(unknown)) or 'none'}; choose from {','.join(DIALECTS)}")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    single = args.requests or (400 if quick else 3000)
    concurrent = args.concurrent_requests or (4000 if quick else 20000)
    streams = args.concurrent_streams or (1000 if quick else 5000)
    return Plan(
        single=single,
        single_warmup=max(50, single // 10),
        concurrent=concurrent,
        concurrent_warmup=max(500, concurrent // 10),
        callers=args.callers,
        cap_s=args.cap or (8.0 if quick else 30.0),
        concurrent_stream=streams,
        concurrent_stream_warmup=max(200, streams // 10),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    cores = os.sched_getaffinity(0)
    pin = not args.no_pin and shutil.which("taskset") is not None and {0, 1} <= cores
    if not args.no_pin and not pin:
        print("warning: cannot pin to cores 0 and 1 (taskset or 2 cores missing): figures are not comparable")
    generator_core = GENERATOR_CORE if pin else None
    server_core = PROMPTDECK_CORE if pin else None
    dialects = [] if args.direct_only else args.dialect_list
    print(
        f"promptdeck gateway overhead: 1-caller phases {plan.single} requests, {plan.callers}-caller phases "
        f"{plan.concurrent} requests / {plan.concurrent_stream} streams of {args.deltas} deltas, "
        f"cap {plan.cap_s:.0f} s per phase, dialects {','.join(dialects) or '-'}, pinned={pin}"
    )
    started = time.perf_counter()
    priority = 0
    if args.priority and os.geteuid() == 0:
        # Raised priority (inherited by every process started below) keeps other work on the
        # machine from taking the pinned cores mid-phase; phases are bounded, so nothing starves long.
        os.setpriority(os.PRIO_PROCESS, 0, -abs(args.priority))
        priority = -abs(args.priority)
    idle_load = background_load()
    if idle_load > 0.2:
        print(f"warning: other processes keep {idle_load} cores busy: figures will be noisy")

    def log(line: str) -> None:
        print(line, flush=True)

    memory: dict[str, dict[str, float]] = {}
    sink: dict[str, Any] | None = None  # what the OTLP sink received (--traces)
    quotas: dict[str, Any] | None = None  # Redis and budget state, window costs (--quotas)
    upstream, upstream_port = start_upstream(generator_core, args.deltas, args.upstream_delay_ms)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="promptdeck-bench-") as tmp,
            contextlib.ExitStack() as stack,
        ):
            pids = {"generator": os.getpid(), "upstream": upstream.pid}
            targets = [direct_target(upstream_port)]
            if not args.direct_only:
                proxy, proxy_port = start_proxy(server_core, upstream_port)
                stack.callback(stop_process, proxy)
                pids["proxy"] = proxy.pid
                targets.append(proxy_target(proxy_port))
                # With --quotas the plain server prices the model too: what differs is the quotas
                server, promptdeck_port, key = stack.enter_context(
                    promptdeck_server(
                        server_core, upstream_port, Path(tmp), setup=price_model if args.quotas else None
                    )
                )
                pids["promptdeck"] = server.pid
                targets += [promptdeck_target(promptdeck_port, key, dialect) for dialect in dialects]
                if args.traces:
                    traced_pid, traced_port, traced_key, sink_port = stack.enter_context(
                        traced_promptdeck(server_core, generator_core, upstream_port, Path(tmp) / "traced")
                    )
                    pids[TRACED] = traced_pid
                    targets += traced_targets(traced_port, traced_key, dialects)
                if args.metrics_off:
                    off_pid, off_port, off_key = stack.enter_context(
                        unmetered_promptdeck(server_core, upstream_port, Path(tmp) / "metrics-off")
                    )
                    pids[UNMETERED] = off_pid
                    targets += unmetered_targets(off_port, off_key, dialects)
                if args.quotas:
                    quota_run = stack.enter_context(
                        quota_promptdecks(server_core, generator_core, upstream_port, Path(tmp) / "quotas")
                    )
                    pids |= {server.name: server.pid for server in quota_run.servers}
                    targets += quota_targets(quota_run, dialects)

            profiler = None
            if args.py_spy and "promptdeck" in pids:
                profiler = Profiler(pids["promptdeck"], args.py_spy, generator_core)

            if generator_core is not None:
                os.sched_setaffinity(0, {generator_core})  # what `taskset -c 0` does, for this process
            chosen = tuple(p for p in PHASES if p in args.phases.split(","))
            results = run_fast(run_all(targets, plan, pids, chosen, profiler, log, args.deltas, args.rounds))
            if args.quotas and not args.direct_only:  # before the servers stop
                quotas = {"state": quota_state(quota_run)}
                if server_core is not None:  # the client on promptdeck's core, as in the measured run
                    os.sched_setaffinity(0, {server_core})
                quotas["window_costs"] = window_costs(quota_run.redis_port, log)
            os.sched_setaffinity(0, cores)
            measured = ("proxy", "promptdeck", *QUOTAS)
            memory = {name: memory_mb(pids[name]) for name in measured if name in pids}
            sink = sink_stats(sink_port) if args.traces and not args.direct_only else None
    finally:
        stop_process(upstream)

    add_event_cpu(results, args.deltas)
    proxy_figures = versus_proxy(results)
    report: dict[str, Any] = {
        "meta": {
            **run_meta(pin, idle_load),
            "priority": priority,
            "quick": args.quick,
            "plan": plan.__dict__,
            "dialects": dialects,
            "upstream_deltas": args.deltas,
            "upstream_delay_ms": args.upstream_delay_ms,
            "profiled": bool(args.py_spy),
            "rounds": args.rounds,
            "duration_s": round(time.perf_counter() - started, 1),
        },
        "results": results,
        "memory": memory,
        "versus_proxy": proxy_figures,
        "goals": goals(results, proxy_figures, memory.get("promptdeck", {}).get("hwm_mb")),
        "references": REFERENCES,
    }
    if sink is not None:
        report["traces"] = traces_figures(results, dialects, sink)
    if args.metrics_off and dialects:
        report["metrics"] = metrics_figures(results, dialects)
    if quotas is not None:
        report["quotas"] = quotas_figures(results, dialects, quotas["state"]) | quotas
    print()
    print(markdown(report))
    if sink is not None:
        print()
        print(traces_markdown(report["traces"]))
    if "metrics" in report:
        print()
        print(metrics_markdown(report["metrics"]))
    if "quotas" in report:
        print()
        print(quotas_markdown(report["quotas"]))
        print()
        print(window_markdown(report["quotas"]["window_costs"]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    if args.baseline.exists() and not args.save_baseline:
        print()
        print(compare(report, json.loads(args.baseline.read_text())))
    if args.save_baseline:
        args.baseline.parent.mkdir(parents=True, exist_ok=True)
        args.baseline.write_text(json.dumps(report, indent=2) + "\n")
        print(f"baseline saved: {args.baseline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
