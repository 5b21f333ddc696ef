"""The admin API's evaluations: start one (`POST /api/prompts/{slug}/evaluations`, answered 202
at once: it runs in the background), list a prompt's, read one with its live progress and its
per-case results, cancel, re-run, and compare two or more on the same dataset. Same gate, scopes
and error shape as `admin.py` (docs/evaluations.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from promptdeck.domain.evaluation_summary import summarize
from promptdeck.domain.run_filters import VERSION_NUMBER_MAX
from promptdeck.engine.auth import Caller
from promptdeck.engine.evaluation_comparison import side_by_side
from promptdeck.engine.evaluations import DEFAULT_CONCURRENCY, MAX_CONCURRENCY
from promptdeck.surfaces.admin import Admin, VersionIn, render_error
from promptdeck.surfaces.callers import admin_gate, services
from promptdeck.surfaces.error_shapes import ERRORS
from promptdeck.surfaces.http import dialect_route

router = APIRouter(
    prefix="/api",
    route_class=dialect_route(render_error, admin_gate),
    tags=["Evaluations"],
    responses=ERRORS["admin"],
)


class EvaluationIn(BaseModel):
    """What to run on the dataset: `version`, `draft`, or `deployment` and `variant`."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(..., max_length=100, description="the name of one of the prompt's datasets")
    version: int | None = Field(None, ge=1, le=VERSION_NUMBER_MAX, description="a saved version's number")
    draft: VersionIn | None = Field(
        None, description="an unsaved version, as POST /api/prompts/{slug}/versions takes it"
    )
    deployment: str | None = Field(
        None, max_length=100, description="with variant: run what the variant serves"
    )
    variant: str | None = Field(None, max_length=100)
    evaluators: list[dict[str, Any]] | None = Field(
        None, description="instead of the dataset's own evaluators"
    )
    concurrency: int = Field(
        DEFAULT_CONCURRENCY, ge=1, le=MAX_CONCURRENCY, description="calls in flight at once"
    )


@router.post(
    "/prompts/{slug}/evaluations",
    status_code=202,
    summary="Start an evaluation of a version, a draft or a variant on a dataset; it runs in the background",
)
async def start_evaluation(
    slug: str, body: EvaluationIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    target = {
        "version": body.version,
        "draft": body.draft.model_dump(exclude_none=True) if body.draft is not None else None,
        "deployment": body.deployment,
        "variant": body.variant,
    }
    runner = services(request).evaluations
    return await runner.start(caller, slug, body.dataset, target, body.evaluators, body.concurrency)


@router.get("/prompts/{slug}/evaluations", summary="A prompt's evaluations, newest first")
async def list_evaluations(
    slug: str, request: Request, caller: Caller = Admin, limit: int = Query(50, ge=1, le=500)
) -> dict[str, Any]:
    app = services(request)
    prompt = await app.catalog.prompts.get_prompt(caller.workspace_id, slug)
    found = await app.evaluations.store.of_prompt(caller.workspace_id, prompt.id, limit)
    return {"data": [app.evaluations.live(evaluation) for evaluation in found]}


@router.get(
    "/evaluations/compare",
    summary="Two or more evaluations of one dataset side by side; cases that went from pass to fail first",
)
async def compare_evaluations(
    request: Request,
    caller: Caller = Admin,
    ids: str = Query(..., description="evaluation ids, comma-separated (2 to 10)"),
) -> dict[str, Any]:
    store = services(request).evaluations.store
    return await side_by_side(store, caller.workspace_id, ids.split(","))


@router.get(
    "/evaluations/{evaluation_id}", summary="An evaluation: state, progress (completed of total), summary"
)
async def get_evaluation(evaluation_id: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await services(request).evaluations.get(caller.workspace_id, evaluation_id)


@router.get(
    "/evaluations/{evaluation_id}/results",
    summary="Every case's result so far: output, scores, status, tokens, cost, latency, error, run id",
)
async def evaluation_results(evaluation_id: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    results = await services(request).evaluations.store.results(caller.workspace_id, evaluation_id)
    return {"data": results, "summary": summarize(results)}


@router.post("/evaluations/{evaluation_id}/cancel", summary="Stop a queued or running evaluation")
async def cancel_evaluation(evaluation_id: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await services(request).evaluations.cancel(caller.workspace_id, evaluation_id)


@router.post(
    "/evaluations/{evaluation_id}/rerun",
    status_code=202,
    summary="A new evaluation of the same target, dataset and evaluators",
)
async def rerun_evaluation(evaluation_id: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await services(request).evaluations.rerun(caller, evaluation_id)


class GateCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(..., ge=1, le=VERSION_NUMBER_MAX, description="the version the variant would serve")


@router.post(
    "/deployments/{name}/variants/{variant}/gates/check",
    summary="Judge a version by the variant's gates, running the evaluations they need; moves nothing",
)
async def check_gates(
    name: str, variant: str, body: GateCheckIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    gates = services(request).release_gates
    failures = await gates.failures(caller.workspace_id, name, variant, body.version)
    return {"deployment": name, "variant": variant, "version": body.version, "failures": failures}
