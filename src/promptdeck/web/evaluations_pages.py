"""Evaluations in the console: a prompt's Evaluations tab (its evaluations, a form to start one on
a dataset, checkboxes to compare), an evaluation's page (live progress, cancel and re-run, the
summary and every case's result) and the compare view (pass→fail cases first).

Everything is read from the evaluation runner and its store, as the admin API reads it; the
page's script (static/evaluation.js) polls `GET /api/evaluations/{id}` while one runs. Forms
post and redirect (Post/Redirect/Get).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response

from promptdeck.domain.errors import HTTP_STATUS, NotFound, PromptdeckError, ValidationFailed
from promptdeck.domain.evaluation_summary import summarize
from promptdeck.engine.auth import Caller
from promptdeck.engine.evaluation_comparison import COMPARE_MAX, side_by_side
from promptdeck.engine.evaluations import DEFAULT_CONCURRENCY, MAX_CONCURRENCY
from promptdeck.store.console_sessions import Session
from promptdeck.store.evaluations import UNFINISHED
from promptdeck.web.pages import ConsoleRoute, redirect
from promptdeck.web.prompts_pages import prompt_tab, prompt_with_versions
from promptdeck.web.session import Editor, Member, checked_form, services
from promptdeck.web.settings_pages import form_text

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
VARIANT = "variant:"  # a target option's value: `variant:["deployment", "variant"]`
LIST_LIMIT = 100


def home(slug: str, evaluation_id: str | None = None) -> str:
    base = f"/prompts/{quote(slug, safe='')}/evaluations"
    return base if evaluation_id is None else f"{base}/{quote(evaluation_id, safe='')}"


def caller_of(session: Session) -> Caller:
    member = session.member
    return Caller.member(member.workspace_id, member.email, member.role)


def target_label(evaluation: dict[str, Any]) -> str:
    """What ran, in words: `v3`, `draft`, or `summarize/default (v2)`."""
    target = evaluation.get("target") or {}
    if "draft" in target:
        return "draft"
    if "deployment" in target:
        return f"{target['deployment']}/{target['variant']} (v{target.get('version')})"
    return f"v{evaluation.get('version')}"


def chosen_target(raw: str) -> dict[str, Any]:
    """The start form's `target`: `version:<n>` or `variant:<JSON [deployment, variant]>`."""
    if raw.startswith("version:") and raw[8:].isdigit():
        return {"version": int(raw[8:])}
    if raw.startswith(VARIANT):
        try:
            deployment, variant = json.loads(raw[len(VARIANT) :])
            return {"deployment": str(deployment), "variant": str(variant)}
        except (ValueError, TypeError):
            pass
    raise ValidationFailed("target: choose a version, or what a deployment's variant serves")


def concurrency_of(raw: str) -> int:
    if not raw:
        return DEFAULT_CONCURRENCY
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_CONCURRENCY:
        raise ValidationFailed(f"concurrency: a whole number from 1 to {MAX_CONCURRENCY}")
    return int(raw)


@router.get("/prompts/{slug}/evaluations")
async def evaluations_tab(slug: str, request: Request, session: Session = Member) -> Response:
    return await _list_page(request, session, slug)


@router.post("/prompts/{slug}/evaluations")
async def start_evaluation(slug: str, request: Request, session: Session = Editor) -> Response:
    form = await checked_form(request, session.csrf_token)  # refused: the 403 page
    try:
        started = await services(request).evaluations.start(
            caller_of(session),
            slug,
            form_text(form, "dataset"),
            chosen_target(form_text(form, "target")),
            None,
            concurrency_of(form_text(form, "concurrency")),
        )
    except PromptdeckError as error:
        posted = await request.form()
        kept = {k: posted.get(k, "") for k in ("dataset", "target", "concurrency")}
        status = HTTP_STATUS.get(error.code, 400)
        return await _list_page(request, session, slug, status, error=error.message, values=kept)
    return redirect(home(slug, started["id"]))


@router.get("/prompts/{slug}/evaluations/compare")
async def compare_page(
    slug: str,
    request: Request,
    ids: list[str] = Query(default=[]),
    baseline: str = "",
    session: Session = Member,
) -> Response:
    """`?ids=a&ids=b`: the baseline (`baseline=`, else the oldest version's) comes first, and
    every other evaluation is judged against it."""
    runner, workspace_id = services(request).evaluations, session.member.workspace_id
    try:
        if not 2 <= len(ids) <= COMPARE_MAX:
            raise ValidationFailed(f"{len(ids)} ticked")
        metas = sorted(
            [await runner.get(workspace_id, evaluation_id) for evaluation_id in ids], key=_baseline_first
        )
        metas.sort(key=lambda meta: meta["id"] != baseline)
        compared = await side_by_side(runner.store, workspace_id, [meta["id"] for meta in metas])
    except ValidationFailed as error:
        message = f"Tick 2 to {COMPARE_MAX} evaluations of one dataset to compare them ({error.message})."
        return await _list_page(request, session, slug, 422, error=message)
    if any(meta["prompt"] != slug for meta in metas):
        raise NotFound(f"those evaluations are not all of prompt {slug!r}")
    prompt = await prompt_with_versions(request, workspace_id, slug)
    return prompt_tab(
        request,
        session,
        prompt,
        "evaluations_compare",
        compared=compared,
        metas=metas,
        labels=[target_label(meta) for meta in metas],
        evaluator_names=_evaluator_names(compared["evaluations"]),
        cases=await _cases(request, workspace_id, slug, compared["dataset"]),
        ids=[meta["id"] for meta in metas],
    )


@router.get("/prompts/{slug}/evaluations/{evaluation_id}")
async def evaluation_page(
    slug: str, evaluation_id: str, request: Request, session: Session = Member
) -> Response:
    return await _detail_page(request, session, slug, evaluation_id)


@router.post("/prompts/{slug}/evaluations/{evaluation_id}/{action}")
async def act_on_evaluation(
    slug: str, evaluation_id: str, action: str, request: Request, session: Session = Editor
) -> Response:
    """`cancel` (stop it; finished cases stay) or `rerun` (a new evaluation of the same target)."""
    runner = services(request).evaluations
    await checked_form(request, session.csrf_token)  # refused: the 403 page
    try:
        if action == "cancel":
            await runner.cancel(session.member.workspace_id, evaluation_id)
            return redirect(home(slug, evaluation_id))
        if action == "rerun":
            started = await runner.rerun(caller_of(session), evaluation_id)
            return redirect(home(slug, started["id"]))
        raise NotFound(f"no action {action!r} (cancel, rerun)")
    except PromptdeckError as error:
        status = HTTP_STATUS.get(error.code, 400)
        return await _detail_page(request, session, slug, evaluation_id, status, error=error.message)


# ── pages ────────────────────────────────────────────────────────────────────


async def _list_page(
    request: Request, session: Session, slug: str, status: int = 200, **context: Any
) -> Response:
    app, workspace_id = services(request), session.member.workspace_id
    prompt = await prompt_with_versions(request, workspace_id, slug)
    found = await app.evaluations.store.of_prompt(workspace_id, prompt["id"], LIST_LIMIT)
    evaluations = [app.evaluations.live(evaluation) for evaluation in found]
    serving = [
        (deployment.name, variant, version.number)
        for deployment in await app.catalog.deployments.list_deployments(workspace_id)
        if deployment.prompt_id == prompt["id"]
        for variant, version in sorted(deployment.variants.items())
    ]
    response = prompt_tab(
        request,
        session,
        prompt,
        "evaluations",
        evaluations=evaluations,
        labels={e["id"]: target_label(e) for e in evaluations},
        datasets=await app.datasets.of_prompt(workspace_id, slug),
        serving=[(f"{VARIANT}{json.dumps([d, v])}", f"{d} / {v} — serves v{n}") for d, v, n in serving],
        default_concurrency=DEFAULT_CONCURRENCY,
        max_concurrency=MAX_CONCURRENCY,
        compare_max=COMPARE_MAX,
        **context,
    )
    response.status_code = status
    return response


async def _detail_page(
    request: Request, session: Session, slug: str, evaluation_id: str, status: int = 200, **context: Any
) -> Response:
    app, workspace_id = services(request), session.member.workspace_id
    evaluation = await app.evaluations.get(workspace_id, evaluation_id)
    if evaluation["prompt"] != slug:
        raise NotFound(f"prompt {slug!r} has no evaluation {evaluation_id!r}")
    prompt = await prompt_with_versions(request, workspace_id, slug)
    results = await app.evaluations.store.results(workspace_id, evaluation_id)
    response = prompt_tab(
        request,
        session,
        prompt,
        "evaluation",
        evaluation=evaluation,
        label=target_label(evaluation),
        running=evaluation["status"] in UNFINISHED,
        summary=evaluation["summary"] or (summarize(results) if results else None),
        results=results,
        cases=await _cases(request, workspace_id, slug, evaluation["dataset"]),
        as_json=_as_json,
        **context,
    )
    response.status_code = status
    return response


async def _cases(
    request: Request, workspace_id: str, slug: str, dataset: str | None
) -> dict[str, dict[str, Any]]:
    """The dataset's cases by id (inputs, expected), for the result tables; none once deleted."""
    if dataset is None:
        return {}
    try:
        found = await services(request).datasets.cases(workspace_id, slug, dataset)
    except NotFound:
        return {}
    return {case.id: {"inputs": dict(case.inputs), "expected": case.expected} for case in found if case.id}


def _baseline_first(evaluation: dict[str, Any]) -> tuple[bool, int, Any]:
    """Saved versions oldest first (what callers get before a release), then drafts; ties by start."""
    version = evaluation.get("version")
    return (version is None, version or 0, evaluation["created_at"])


def _evaluator_names(evaluations: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for evaluation in evaluations:
        names.update(dict.fromkeys(evaluation["evaluators"]))
    return list(names)


def _as_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
