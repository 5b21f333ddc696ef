"""Limits & budgets: a workspace's rate limits, and its budgets each with a bar of this period's
spend (spent, held by calls in flight, remaining); everyone reads, owners set, change and delete
them. Setting a subject that has one changes it; "Change" fills the form with a row's figures.

Forms post and redirect (Post/Redirect/Get), with the outcome in the settings pages' flash
cookie; every change goes through quota_changes, as the admin API's do, so both are audited.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.datastructures import FormData

from promptdeck import quota_changes
from promptdeck.domain.errors import HTTP_STATUS, NotFound, PromptdeckError, ValidationFailed
from promptdeck.domain.quotas import PERIODS, SUBJECT_KINDS
from promptdeck.store.console_sessions import Session
from promptdeck.web.pages import ConsoleRoute, page
from promptdeck.web.session import Member, Owner, caller_of, checked_form, services
from promptdeck.web.settings_pages import FLASH_COOKIE, Done, flashed, form_text, take_flash

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
HOME = "/limits"
KIND_LABELS = {"workspace": "Workspace", "key": "API key", "deployment": "Deployment", "end_user": "End user"}


@router.get(HOME)
async def limits_page(request: Request, session: Session = Member) -> Response:
    done = take_flash(request)
    response = await _page(request, session, **(asdict(done) if done else {}))
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path=HOME)
    return response


@router.post(HOME + "/rate")
async def set_limit(request: Request, session: Session = Owner) -> Response:
    async def act(form: FormData) -> str:
        made = await quota_changes.set_limit(
            request,
            caller_of(session),
            form_text(form, "subject_kind"),
            form_text(form, "subject"),
            _whole(form, "requests_per_minute"),
            _whole(form, "tokens_per_minute"),
        )
        return f"Rate limit set for {_subject(made)}."

    return await _act(request, session, act, "limit")


@router.post(HOME + "/budget")
async def set_budget(request: Request, session: Session = Owner) -> Response:
    async def act(form: FormData) -> str:
        made = await quota_changes.set_budget(
            request,
            caller_of(session),
            form_text(form, "subject_kind"),
            form_text(form, "subject"),
            form_text(form, "period"),
            _amount(form),
        )
        return f"Budget set: ${made['amount_usd']:g} per {made['period']} for {_subject(made)}."

    return await _act(request, session, act, "budget")


@router.post(HOME + "/{what}/{row_id}/delete")
async def delete(what: str, row_id: str, request: Request, session: Session = Owner) -> Response:
    async def act(form: FormData) -> str:
        if what == "rate":
            gone = await quota_changes.delete_limit(request, caller_of(session), row_id)
            return f"Rate limit for {_subject(gone)} deleted."
        if what == "budget":
            gone = await quota_changes.delete_budget(request, caller_of(session), row_id)
            return f"{gone['period'].capitalize()}ly budget for {_subject(gone)} deleted."
        raise NotFound(f"nothing called {what!r} to delete (rate, budget)")

    return await _act(request, session, act, "")


async def _act(request: Request, session: Session, act: Any, form_name: str) -> Response:
    """Check the CSRF token, make the change, and redirect; a refusal shows the page again with
    the message and what was typed."""
    try:
        form = await checked_form(request, session.csrf_token)
        notice = await act(form)
    except PromptdeckError as error:
        posted = await request.form()
        typed = {k: v for k, v in posted.items() if isinstance(v, str) and k != "csrf_token"}
        values = {form_name: typed} if form_name else {}
        return await _page(
            request, session, HTTP_STATUS.get(error.code, 400), error=error.message, values=values
        )
    return flashed(request, HOME, Done(notice), HOME)


async def _page(request: Request, session: Session, status: int = 200, **context: Any) -> Response:
    app, workspace_id = services(request), session.member.workspace_id
    limits = await app.quotas.list_limits(workspace_id)
    report = await app.budget_status.report(workspace_id)
    owner = session.member.role == "owner"
    values = context.pop("values", {})
    if owner and not values:  # "Change": the form filled with a row's figures
        values = _editing(request, limits, report["data"])
    keys = await app.access.list_keys(workspace_id) if owner else []
    key_names = {k.id: k.name for k in keys}
    return page(
        request,
        "limits.html",
        status,
        owner=owner,
        limits=[x | {"label": _subject(x, key_names)} for x in limits],
        budgets=[b | {"label": _subject(b, key_names), "bar": _bar(b)} for b in report["data"]],
        spent=report["workspace"],
        kinds=[(k, KIND_LABELS[k]) for k in SUBJECT_KINDS],
        periods=PERIODS,
        keys=[k for k in keys if k.revoked_at is None],
        deployments=[d.name for d in await app.catalog.deployments.list_deployments(workspace_id)]
        if owner
        else [],
        values=values,
        **context,
    )


def _editing(request: Request, limits: list[dict[str, Any]], budgets: list[dict[str, Any]]) -> dict[str, Any]:
    params = request.query_params
    for name, rows in (("limit", limits), ("budget", budgets)):
        row = next((r for r in rows if r["id"] == params.get(f"change_{name}")), None)
        if row is not None:
            return {name: {k: "" if v is None else str(v) for k, v in row.items()}}
    return {}


def _subject(row: dict[str, Any], key_names: dict[str, str] | None = None) -> str:
    kind, subject = row["subject_kind"], row["subject"]
    if kind == "workspace":
        return "the workspace"
    if not subject:
        return f"each {KIND_LABELS[kind].lower()}"
    if kind == "key" and key_names and subject in key_names:
        return f"key {key_names[subject]} ({subject})"
    return f"{KIND_LABELS[kind].lower()} {subject}"


def _bar(budget: dict[str, Any]) -> dict[str, float]:
    """The spend bar's widths, in percent of the budget (spent first, then held in flight)."""
    amount = budget["amount_usd"]
    if amount <= 0:
        return {"spent": 100.0 if budget["spent_usd"] > 0 else 0.0, "reserved": 0.0}
    spent = min(100.0, 100 * budget["spent_usd"] / amount)
    return {"spent": spent, "reserved": min(100.0 - spent, 100 * budget["reserved_usd"] / amount)}


def _whole(form: FormData, name: str) -> int | None:
    text = form_text(form, name)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValidationFailed(f"{name.replace('_', ' ')} must be a whole number") from None


def _amount(form: FormData) -> float:
    text = form_text(form, "amount_usd").lstrip("$")
    try:
        return float(text)
    except ValueError:
        raise ValidationFailed("the amount must be a number of US dollars, like 25 or 0.50") from None
