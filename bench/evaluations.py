"""Evaluation runs at scale: 1,000 cases against the fast fake upstream at concurrency 32.

    .venv/bin/python bench/evaluations.py                    # 3 rounds of 1,000 cases (about a minute)
    .venv/bin/python bench/evaluations.py --cases 200 --rounds 1
    .venv/bin/python bench/evaluations.py --save-baseline    # also write results/evaluations_baseline.json

Starts `fake_upstream.py` (the gateway bench's: answers at once) and, in this process, the
server's services on a fresh SQLite file (`Services.build` and `start`, as `promptdeck serve`
runs them: the run writer, the WAL checkpointer), with a prompt (`model: openai/bench-model`)
and a dataset of `--cases` cases judged by two built-in evaluators. Then, in alternating rounds:

* `plain`: the same calls with nothing around them — a loop of `Engine.start` and the answer read
  whole, for every case, `--concurrency` at a time (each run still goes to the run writer);
* `evaluation`: `EvaluationRunner.start` of the same version on the dataset, timed until it has
  ended with every result stored (`completed == total`, state `done`, the stored results counted).

Goals (issue 15): the evaluation ends in under 10 s; what the evaluation machinery adds over the
calls themselves — (evaluation wall time - plain wall time) / cases — is under 5 ms per case.
It also reports the process CPU per case of each side. Medians over `--rounds`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cpu_meter import background_load
from gateway_processes import start_upstream, stop_process
from load_client import HOST
from promptdeck.config import Settings
from promptdeck.domain.datasets import DatasetCase
from promptdeck.domain.deployments import standalone
from promptdeck.domain.promptfile import load_prompt_file
from promptdeck.engine.auth import Caller
from promptdeck.engine.invoke import InvokeRequest
from promptdeck.services import Services
from promptdeck.store.database import create_engine, migrate
from promptdeck.store.prompt_sync import PromptSync
from promptdeck.workspace_setup import bootstrap
from run_meta import ROOT, run_meta

RESULTS = ROOT / "bench" / "results"
GOAL_TOTAL_S = 10.0
GOAL_ADDED_MS_PER_CASE = 5.0
PROMPT = """
prompt: bench
model: openai/bench-model
params: {temperature: 0.0, max_tokens: 16}
messages:
  - {role: system, content: "You summarize text in one sentence."}
  - {role: user, content: "Summarize: {{text}}"}
inputs:
  text: {type: string, required: true}
deploy:
  bench: {default: 1}
"""
EVALUATORS = [{"type": "length", "min_length": 1}, {"type": "not_contains", "value": "I cannot"}]


async def seed(settings: Settings, cases: int) -> str:
    await asyncio.to_thread(migrate, settings.database_url)
    workspace_id, _ = await bootstrap(settings)
    db = create_engine(settings.database_url)
    try:
        await PromptSync(db).push(workspace_id, load_prompt_file(PROMPT), actor="bench")
    finally:
        await db.dispose()
    return workspace_id


async def plain(services: Services, caller: Caller, cases: list[DatasetCase], concurrency: int) -> None:
    """The calls alone: what an evaluation's calls cost without the evaluation around them."""
    version = await services.catalog.prompts.get_version(caller.workspace_id, "bench", 1)
    snapshot = standalone(caller.workspace_id, "evaluation:bench", version)
    queue = iter(cases)

    async def worker() -> None:
        for case in queue:
            request = InvokeRequest(
                caller=caller, dialect="evaluation", deployment=snapshot.name, inputs=dict(case.inputs)
            )
            async with await services.engine.start(request, snapshot) as invocation:
                answer = await invocation.answer()
                assert answer.failed is None, answer.failed

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def evaluation(services: Services, caller: Caller, concurrency: int) -> dict[str, Any]:
    runner = services.evaluations
    started = await runner.start(caller, "bench", "bench", {"version": 1}, None, concurrency)
    ended = await runner.wait(caller.workspace_id, started["id"], poll=0.01)
    stored = await runner.store.results(caller.workspace_id, started["id"])
    assert ended["status"] == "done" and ended["completed"] == ended["total"] == len(stored), ended
    assert ended["summary"]["errored"] == 0, ended["summary"]
    return ended


async def measure(args: argparse.Namespace, upstream_port: int, directory: Path) -> dict[str, Any]:
    settings = Settings(
        data_dir=directory,
        database_url=f"sqlite+aiosqlite:///{directory / 'promptdeck.db'}",
        openai_base_url=f"http://{HOST}:{upstream_port}/v1",
        openai_api_key="bench",
    )
    workspace_id = await seed(settings, args.cases)
    services = Services.build(settings)
    await services.start()
    try:
        datasets = services.datasets
        await datasets.create(workspace_id, "bench", "bench", evaluators=EVALUATORS)
        cases = [DatasetCase(inputs={"text": f"case {n}: a text to summarize"}) for n in range(args.cases)]
        await datasets.add_cases(workspace_id, "bench", "bench", cases)
        stored = await datasets.cases(workspace_id, "bench", "bench")
        caller = Caller(None, workspace_id, ("admin",), "bench")
        await plain(services, caller, stored[:64], args.concurrency)  # warm: connections, caches
        await services.writer.flush()
        rounds: list[dict[str, float]] = []
        for number in range(args.rounds):
            figures: dict[str, float] = {}
            for side in ("plain", "evaluation") if number % 2 == 0 else ("evaluation", "plain"):
                cpu, wall = time.process_time(), time.perf_counter()
                if side == "plain":
                    await plain(services, caller, stored, args.concurrency)
                else:
                    await evaluation(services, caller, args.concurrency)
                figures[f"{side}_s"] = time.perf_counter() - wall
                figures[f"{side}_cpu_ms_per_case"] = (time.process_time() - cpu) * 1000 / args.cases
                await services.writer.flush()  # the runs of one side are not written during the other
            figures["added_ms_per_case"] = (figures["evaluation_s"] - figures["plain_s"]) * 1000 / args.cases
            figures["added_cpu_ms_per_case"] = (
                figures["evaluation_cpu_ms_per_case"] - figures["plain_cpu_ms_per_case"]
            )
            rounds.append({k: round(v, 3) for k, v in figures.items()})
            print(f"round {number + 1}: " + ", ".join(f"{k} {v}" for k, v in rounds[-1].items()), flush=True)
    finally:
        await services.stop()
    median = {key: round(statistics.median(r[key] for r in rounds), 3) for key in rounds[0]}
    return {"rounds": rounds, "median": median}


def compare(latest: dict[str, Any], baseline: dict[str, Any]) -> str:
    lines = [
        f"Compared with the baseline of {baseline.get('meta', {}).get('date', '?')}:",
        "",
        "| figure (median) | baseline | latest |",
        "|---|---:|---:|",
    ]
    for key, value in latest["median"].items():
        lines.append(f"| {key} | {baseline.get('median', {}).get(key, '-')} | {value} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--save-baseline", action="store_true", help="also write the baseline")
    parser.add_argument("--output", type=Path, default=RESULTS / "evaluations_latest.json")
    parser.add_argument("--baseline", type=Path, default=RESULTS / "evaluations_baseline.json")
    args = parser.parse_args()
    idle_load = background_load()
    upstream, upstream_port = start_upstream(None, 8, 0.0)
    try:
        with tempfile.TemporaryDirectory(prefix="promptdeck-evaluations-") as tmp:
            found = asyncio.run(measure(args, upstream_port, Path(tmp)))
    finally:
        stop_process(upstream)
    median = found["median"]
    goals = {
        "total_s_under_10": median["evaluation_s"] < GOAL_TOTAL_S,
        "added_ms_per_case_under_5": median["added_ms_per_case"] < GOAL_ADDED_MS_PER_CASE,
    }
    report = {
        "meta": {**run_meta(None, idle_load), "cases": args.cases, "concurrency": args.concurrency},
        **found,
        "goals": goals,
    }
    print()
    verdict = {True: "met", False: "NOT met"}
    print(
        f"{args.cases} cases at concurrency {args.concurrency}: evaluation {median['evaluation_s']} s "
        f"(goal < {GOAL_TOTAL_S} s: {verdict[goals['total_s_under_10']]}), the calls alone "
        f"{median['plain_s']} s; added {median['added_ms_per_case']} ms per case "
        f"(goal < {GOAL_ADDED_MS_PER_CASE} ms: {verdict[goals['added_ms_per_case_under_5']]}), "
        f"CPU +{median['added_cpu_ms_per_case']} ms per case"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {args.output}")
    if args.baseline.exists() and not args.save_baseline:
        print()
        print(compare(report, json.loads(args.baseline.read_text())))
    if args.save_baseline:
        args.baseline.write_text(json.dumps(report, indent=2) + "\n")
        print(f"baseline saved: {args.baseline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
