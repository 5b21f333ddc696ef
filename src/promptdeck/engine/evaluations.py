"""Evaluation runs: a version, an unsaved draft or what a variant serves, run on every case of a
dataset through the engine and scored by the dataset's evaluators (docs/evaluations.md).

Each case is a normal non-streamed call of the version (the playground's way: a standalone
deployment of it, the default reliability rules), its chat history appended after the prompt's
messages, logged as a run with metadata `{"evaluation": id}`. Calls run at a bounded concurrency
in a background task of the server; results are stored in batches, progress is counted in memory
as cases finish (and in the database with each batch, every quarter second), and the task can be cancelled. An
evaluation left unfinished by a stopped server is marked failed at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from promptdeck.domain.answers import Answer
from promptdeck.domain.change_events import Announced, EvaluationFinished
from promptdeck.domain.datasets import DatasetCase
from promptdeck.domain.deployments import Deployment, Version, draft_version, standalone
from promptdeck.domain.errors import Conflict, NotFound, PromptdeckError, ValidationFailed
from promptdeck.domain.evaluation_outcomes import CaseOutcome, Score
from promptdeck.domain.evaluation_summary import case_status, summarize
from promptdeck.domain.evaluators import EvaluatorSpec, parse_evaluators
from promptdeck.domain.prompts import parse_spec
from promptdeck.domain.runs import utcnow
from promptdeck.engine.auth import Caller
from promptdeck.engine.case_scoring import CaseScorer
from promptdeck.engine.invoke import Engine, InvokeRequest
from promptdeck.store.catalog import CatalogStore
from promptdeck.store.datasets import DatasetStore
from promptdeck.store.evaluations import CANCELLED, DONE, FAILED, INTERRUPTED, UNFINISHED, EvaluationStore

log = logging.getLogger("promptdeck.evaluations")

DIALECT = "evaluation"
DEPLOYMENT_PREFIX = "evaluation:"  # runs are logged as `evaluation:<prompt slug>`
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 32
# what an `evaluation.finished` webhook event's `details` hold (and `finished_at`)
ANNOUNCED: tuple[str, ...] = ("id", "prompt", "dataset", "version", "target", "status", "total")
ANNOUNCED += ("completed", "error", "summary")
FLUSH_SECONDS = 0.25  # results waiting are stored this often while an evaluation runs
HEARTBEAT_SECONDS = 10.0  # how often a replica says its evaluations are alive, and sweeps
SILENT_SECONDS = 60.0  # an unfinished evaluation silent this long lost its replica: failed


@dataclass(slots=True)
class Job:
    """An evaluation running in this process."""

    id: str
    workspace_id: str
    caller: Caller
    snapshot: Deployment
    specs: list[EvaluatorSpec]
    cases: list[DatasetCase]
    concurrency: int
    completed: int = 0
    cancelled: bool = False  # by a user (not a shutdown)
    waiting: list[dict[str, Any]] = field(default_factory=list)  # results not stored yet
    results: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


def output_text(answer: Answer) -> str:
    """The answer as evaluators read it: its text, or its tool calls as JSON text."""
    if answer.text or not answer.tool_calls:
        return answer.text
    return json.dumps([call.as_dict() for call in answer.tool_calls])


class EvaluationRunner:
    """Starts, tracks, cancels and re-runs evaluations; one per server process."""

    def __init__(
        self,
        engine: Engine,
        store: EvaluationStore,
        datasets: DatasetStore,
        catalog: CatalogStore,
        scorer: CaseScorer | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.datasets = datasets
        self.catalog = catalog
        self.scorer = scorer or CaseScorer(engine)
        self.jobs: dict[str, Job] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # ── starting ─────────────────────────────────────────────────────────────

    async def start(
        self,
        caller: Caller,
        prompt: str,
        dataset: str,
        target: Mapping[str, Any],
        evaluators: Sequence[Mapping[str, Any]] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> dict[str, Any]:
        """Check everything, store the evaluation as queued and start it in the background.
        `target`: `{"version": n}`, `{"draft": {...}}` or `{"deployment": d, "variant": v}`."""
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValidationFailed(f"concurrency: from 1 to {MAX_CONCURRENCY}")
        workspace_id = caller.workspace_id
        found = await self.catalog.prompts.get_prompt(workspace_id, prompt)
        data = await self.datasets.dataset(workspace_id, prompt, dataset)
        raw = [dict(spec) for spec in (evaluators if evaluators is not None else data.evaluators)]
        specs = list(parse_evaluators(raw))
        version, stored_target = await self._resolve(caller, found.id, prompt, target)
        cases = await self.datasets.cases(workspace_id, prompt, dataset)
        if not cases:
            raise ValidationFailed(f"dataset {dataset!r} has no cases to evaluate")
        evaluation_id = await self.store.create(
            workspace_id,
            found.id,
            data.id,
            stored_target,
            stored_target.get("version"),
            raw,
            len(cases),
            concurrency,
            caller.actor,
        )
        name = (DEPLOYMENT_PREFIX + prompt)[:100]
        job = Job(
            evaluation_id,
            workspace_id,
            caller,
            standalone(workspace_id, name, version),
            specs,
            cases,
            concurrency,
        )
        self.jobs[evaluation_id] = job
        job.task = asyncio.create_task(self._run(job), name=f"evaluation-{evaluation_id}")
        return await self.get(workspace_id, evaluation_id)

    async def _resolve(
        self, caller: Caller, prompt_id: str, prompt: str, target: Mapping[str, Any]
    ) -> tuple[Version, dict[str, Any]]:
        """The version to run, and the target as stored (a variant's resolved to its version)."""
        kinds = [kind for kind in ("version", "draft", "deployment") if target.get(kind) is not None]
        if len(kinds) != 1 or (kinds == ["deployment"]) != (target.get("variant") is not None):
            raise ValidationFailed(
                "name what to evaluate: version, draft, or deployment and variant (one of them)"
            )
        if kinds == ["version"]:
            version = await self.catalog.prompts.get_version(
                caller.workspace_id, prompt, int(target["version"])
            )
            return version, {"version": version.number}
        if kinds == ["draft"]:
            draft = dict(target["draft"])
            return draft_version(parse_spec(draft), prompt, caller.actor), {"draft": draft}
        deployment = await self.catalog.deployments.load_deployment(
            caller.workspace_id, str(target["deployment"])
        )
        if deployment.prompt_id != prompt_id:
            raise ValidationFailed(f"deployment {deployment.name!r} does not serve prompt {prompt!r}")
        variant = str(target["variant"])
        if variant not in deployment.variants:
            raise NotFound(f"deployment {deployment.name!r} has no variant {variant!r}")
        _, version = deployment.resolve(variant)
        return version, {"deployment": deployment.name, "variant": variant, "version": version.number}

    async def rerun(self, caller: Caller, evaluation_id: str) -> dict[str, Any]:
        """A new evaluation of the same target, dataset and evaluators (a variant's is resolved
        again: it runs what the variant serves now)."""
        old = await self.store.get(caller.workspace_id, evaluation_id)
        if old["dataset"] is None:
            raise NotFound("the evaluation's dataset no longer exists")
        target = {
            k: v for k, v in old["target"].items() if k != "version" or "deployment" not in old["target"]
        }
        return await self.start(
            caller, old["prompt"], old["dataset"], target, old["evaluators"], old["concurrency"]
        )

    # ── reading, cancelling, waiting ────────────────────────────────────────

    async def get(self, workspace_id: str, evaluation_id: str) -> dict[str, Any]:
        """The evaluation with its live progress when it runs here."""
        return self.live(await self.store.get(workspace_id, evaluation_id))

    def live(self, evaluation: dict[str, Any]) -> dict[str, Any]:
        job = self.jobs.get(evaluation["id"])
        if job is not None and evaluation["status"] in UNFINISHED:
            evaluation["completed"] = max(evaluation["completed"], job.completed)
        evaluation["progress"] = evaluation["completed"] / evaluation["total"] if evaluation["total"] else 1.0
        return evaluation

    async def cancel(self, workspace_id: str, evaluation_id: str) -> dict[str, Any]:
        """Stop an evaluation: calls in flight end as cancelled runs, finished cases stay stored."""
        evaluation = await self.store.get(workspace_id, evaluation_id)
        if evaluation["status"] not in UNFINISHED:
            raise Conflict(f"the evaluation has already ended ({evaluation['status']})")
        job = self.jobs.get(evaluation_id)
        if job is not None and job.task is not None:
            job.cancelled = True
            job.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job.task
        else:  # started by another server process: it stores what it has, the state stays cancelled
            await self.store.finish(evaluation_id, CANCELLED, None, "cancelled")
        return await self.get(workspace_id, evaluation_id)

    async def wait(self, workspace_id: str, evaluation_id: str, poll: float = 0.2) -> dict[str, Any]:
        """The evaluation once it has ended."""
        while True:
            job = self.jobs.get(evaluation_id)
            if job is not None and job.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(job.task)
            evaluation = await self.get(workspace_id, evaluation_id)
            if evaluation["status"] not in UNFINISHED:
                return evaluation
            await asyncio.sleep(poll)

    # ── the server's lifespan ───────────────────────────────────────────────

    async def recover(self) -> None:
        """At start, then every HEARTBEAT_SECONDS: this replica's evaluations are marked alive,
        and those no replica has marked alive for SILENT_SECONDS (a server that stopped or
        crashed while running them) are marked failed. Other live replicas' are left alone."""
        await self._sweep()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="evaluation-heartbeat")

    async def _sweep(self) -> None:
        mine = list(self.jobs)
        await self.store.beat(mine)
        silent_since = utcnow() - timedelta(seconds=SILENT_SECONDS)
        if count := await self.store.end_interrupted(silent_since, keep=mine):
            log.warning("%d evaluation(s) lost the server that ran them: marked failed", count)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._sweep()
            except Exception:
                log.exception("the evaluations' heartbeat failed; trying again in %.0f s", HEARTBEAT_SECONDS)

    async def stop(self) -> None:
        """At shutdown, before the run writer drains: stop every evaluation, storing what it has."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        tasks = [job.task for job in self.jobs.values() if job.task is not None and not job.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ── running ──────────────────────────────────────────────────────────────

    async def _run(self, job: Job) -> None:
        status, error = DONE, None
        stop = asyncio.Event()
        flusher: asyncio.Task[None] | None = None
        try:
            await self.store.set_running(job.id)
            # Its own task, never cancelled: a batch cut short in its transaction would be lost.
            flusher = asyncio.create_task(self._flush_until(job, stop))
            queue = iter(enumerate(job.cases, start=1))
            await asyncio.gather(
                *(self._worker(job, queue) for _ in range(min(job.concurrency, len(job.cases))))
            )
        except asyncio.CancelledError:
            status, error = (CANCELLED, "cancelled") if job.cancelled else (FAILED, INTERRUPTED)
        except Exception as exc:  # the database failed, say: the evaluation fails, never the server
            log.exception("evaluation %s failed", job.id)
            status, error = FAILED, f"{type(exc).__name__}: {exc}"
        finally:
            stop.set()
            try:
                if flusher is not None:
                    await flusher
                await self._store_waiting(job)
                summary = summarize(job.results) if job.results else None
                await self.store.finish(job.id, status, summary, error)
                await self._announce(job)
            except Exception as exc:
                log.exception("could not store the results of evaluation %s", job.id)
                with contextlib.suppress(Exception):
                    await self.store.finish(
                        job.id, FAILED, None, f"results not stored: {type(exc).__name__}: {exc}"
                    )
            self.jobs.pop(job.id, None)

    async def _announce(self, job: Job) -> None:
        """Tell webhook subscribers (`evaluation.finished`) how the evaluation ended."""
        ended = await self.store.get(job.workspace_id, job.id)
        details = {key: ended[key] for key in ANNOUNCED}
        details["finished_at"] = ended["finished_at"].isoformat() if ended["finished_at"] else None
        self.catalog.changes.publish(Announced(job.workspace_id, EvaluationFinished(details)))

    async def _flush_until(self, job: Job, stop: asyncio.Event) -> None:
        """Store the results waiting every FLUSH_SECONDS, and once more when told to stop."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FLUSH_SECONDS)
            await self._store_waiting(job)

    async def _store_waiting(self, job: Job) -> None:
        while job.waiting:
            batch, job.waiting = job.waiting, []
            await self.store.add_results(job.id, batch)

    async def _worker(self, job: Job, queue: Any) -> None:
        for position, case in queue:
            try:
                outcome = await self._call(job, case)
                scores = await self._score(job, case, outcome)
            except PromptdeckError as exc:
                outcome, scores = CaseOutcome("", 0.0, error=exc.message), []
            result = {
                "position": position,
                "case_id": case.id,
                "output": outcome.output,
                "scores": [
                    {"evaluator": s.evaluator, "score": s.score, "passed": s.passed, "error": s.error}
                    for s in scores
                ],
                "status": case_status(outcome, scores),
                "input_tokens": outcome.input_tokens,
                "output_tokens": outcome.output_tokens,
                "cost": outcome.cost,
                "latency_ms": round(outcome.latency_ms, 3),
                "error": outcome.error,
                "run_id": outcome.run_id,
            }
            job.results.append(result)
            job.waiting.append(result)
            job.completed += 1

    async def _call(self, job: Job, case: DatasetCase) -> CaseOutcome:
        """One non-streamed call of the case; a refusal or failure is the outcome's error."""
        request = InvokeRequest(
            caller=job.caller,
            dialect=DIALECT,
            deployment=job.snapshot.name,
            inputs=dict(case.inputs),
            messages=[dict(message) for message in case.chat_history] or None,
            metadata={"evaluation": job.id},
        )
        started = time.perf_counter()
        try:
            invocation = await self.engine.start(request, job.snapshot)
        except PromptdeckError as exc:
            return CaseOutcome("", (time.perf_counter() - started) * 1000, error=exc.message)
        async with invocation:
            answer = await invocation.answer()
        finished = answer.finished
        usage = answer.usage
        return CaseOutcome(
            output=output_text(answer),
            latency_ms=answer.duration_ms,
            cost=finished.cost if finished else None,
            input_tokens=usage.input if finished else None,
            output_tokens=usage.output if finished else None,
            error=answer.failed.message if answer.failed else None,
            run_id=answer.run.id,
        )

    async def _score(self, job: Job, case: DatasetCase, outcome: CaseOutcome) -> list[Score]:
        try:
            return await self.scorer.score_all(
                job.workspace_id, job.specs, case, outcome, metadata={"evaluation": job.id}
            )
        except Exception as exc:  # an evaluator never stops an evaluation
            return [Score(spec.name, None, False, error=f"{type(exc).__name__}: {exc}") for spec in job.specs]
