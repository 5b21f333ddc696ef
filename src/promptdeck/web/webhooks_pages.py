"""Webhooks: a workspace's endpoints, adding and deleting them (owners), a test ping, and each
endpoint's delivery log with every try's status.

Forms post and redirect (Post/Redirect/Get); a new endpoint's signing secret rides once in the
settings pages' flash cookie, scoped to `/webhooks`, and is never shown again.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request, Response

from promptdeck.audit_trail import audit, without_secret
from promptdeck.domain.change_events import EVENT_TYPES
from promptdeck.domain.errors import HTTP_STATUS, NotFound, PromptdeckError
from promptdeck.store.console_sessions import Session
from promptdeck.web.evaluations_pages import caller_of
from promptdeck.web.pages import ConsoleRoute, page
from promptdeck.web.session import Member, Owner, checked_form, services
from promptdeck.web.settings_pages import FLASH_COOKIE, Done, flashed, form_text, take_flash

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
HOME = "/webhooks"
# Subscribable now, raised once evaluations and budgets exist.
NOT_RAISED_YET = ("evaluation.finished", "budget.threshold_crossed")


@router.get(HOME)
async def webhooks(request: Request, session: Session = Member) -> Response:
    return _read_once(request, await _list_page(request, session, **_flash(request)))


@router.get(HOME + "/{endpoint_id}")
async def webhook(endpoint_id: str, request: Request, session: Session = Member) -> Response:
    return _read_once(request, await _detail_page(request, session, endpoint_id, **_flash(request)))


@router.post(HOME)
async def add_webhook(request: Request, session: Session = Owner) -> Response:
    try:
        form = await checked_form(request, session.csrf_token)
        created = await services(request).webhooks.create(
            session.member.workspace_id,
            form_text(form, "url"),
            [e for e in form.getlist("events") if isinstance(e, str)],
            form_text(form, "description"),
        )
        added = None, without_secret(created)
        await audit(request, caller_of(session), "webhook.created", "webhook", created["id"], *added)
    except PromptdeckError as error:
        posted = await request.form()
        kept = {"url": posted.get("url", ""), "description": posted.get("description", "")}
        chosen = [e for e in posted.getlist("events") if isinstance(e, str)]
        return await _list_page(
            request,
            session,
            HTTP_STATUS.get(error.code, 400),
            error=error.message,
            values=kept,
            chosen=chosen,
        )
    done = Done(
        f"Endpoint {created['url']} added.",
        "Copy the signing secret now; it is not shown again",
        created["secret"],
    )
    return flashed(request, f"{HOME}/{created['id']}#revealed", done, HOME)


@router.post(HOME + "/{endpoint_id}/{action}")
async def act_on_webhook(
    endpoint_id: str, action: str, request: Request, session: Session = Owner
) -> Response:
    """`delete`, `ping`, `enable`, `disable` or `rotate` (the new secret shown once)."""
    hooks, workspace_id = services(request).webhooks, session.member.workspace_id
    try:
        await checked_form(request, session.csrf_token)
        if action == "delete":
            before = await hooks.endpoints.get(workspace_id, endpoint_id)
            await hooks.endpoints.delete(workspace_id, endpoint_id)
            await audit(request, caller_of(session), "webhook.deleted", "webhook", endpoint_id, before)
            return flashed(request, HOME, Done("The endpoint and its delivery log were deleted."), HOME)
        if action == "ping":
            sent = await hooks.ping(workspace_id, endpoint_id)
            tried = sent["tries"][0] if sent["tries"] else {}
            answer = tried.get("status_code") or tried.get("error") or "not tried"
            done = Done(f"Ping sent: {sent['state']} ({answer}).")
        elif action in ("enable", "disable"):
            before = await hooks.endpoints.get(workspace_id, endpoint_id)
            after = await hooks.update(workspace_id, endpoint_id, {"enabled": action == "enable"})
            await audit(request, caller_of(session), "webhook.changed", "webhook", endpoint_id, before, after)
            done = Done(f"The endpoint is {action}d.")
        elif action == "rotate":
            rotated = await hooks.rotate(workspace_id, endpoint_id)
            await audit(request, caller_of(session), "webhook.secret_rotated", "webhook", endpoint_id)
            done = Done("A new signing secret was made.", "Copy the new secret now", rotated["secret"])
        else:
            raise NotFound(f"no action {action!r} (delete, ping, enable, disable, rotate)")
    except PromptdeckError as error:
        status = HTTP_STATUS.get(error.code, 400)
        try:
            return await _detail_page(request, session, endpoint_id, status, error=error.message)
        except NotFound:  # a forged or stale form for an endpoint that is gone
            return await _list_page(request, session, status, error=error.message)
    return flashed(request, f"{HOME}/{endpoint_id}" + ("#revealed" if done.reveal_value else ""), done, HOME)


async def _list_page(request: Request, session: Session, status: int = 200, **context: Any) -> Response:
    endpoints = await services(request).webhooks.endpoints.of_workspace(session.member.workspace_id)
    context.setdefault("chosen", [])
    return page(
        request,
        "webhooks.html",
        status,
        owner=session.member.role == "owner",
        endpoints=endpoints,
        event_types=EVENT_TYPES,
        not_raised_yet=NOT_RAISED_YET,
        **context,
    )


async def _detail_page(
    request: Request, session: Session, endpoint_id: str, status: int = 200, **context: Any
) -> Response:
    hooks, workspace_id = services(request).webhooks, session.member.workspace_id
    endpoint = await hooks.endpoints.get(workspace_id, endpoint_id)
    return page(
        request,
        "webhook.html",
        status,
        owner=session.member.role == "owner",
        endpoint=endpoint,
        deliveries=await hooks.deliveries.log(workspace_id, endpoint_id, 100),
        **context,
    )


def _flash(request: Request) -> dict[str, Any]:
    done = take_flash(request)
    return asdict(done) if done else {}


def _read_once(request: Request, response: Response) -> Response:
    """A flash (maybe with a secret) is shown once: a reload does not show it again."""
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path=HOME)
    return response
