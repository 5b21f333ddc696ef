"""Workspaces in the console: the header's switcher (a member of several workspaces moves their
session to another membership) and, for instance administrators, the Workspaces page (list,
create, rename, archive, restore).

A switch ends the session and starts one for the member's row in the other workspace, so
everything a session decides (role, CSRF token) is that membership's. A new workspace's admin
key rides once in the settings pages' flash cookie, scoped to `/workspaces`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from promptdeck.audit_trail import audit
from promptdeck.domain.errors import HTTP_STATUS, Forbidden, NotFound, PromptdeckError
from promptdeck.engine.auth import Caller
from promptdeck.store.console_sessions import Session
from promptdeck.store.workspaces import NAME_MAX, WorkspaceStore, open_workspace
from promptdeck.web.pages import ConsoleRoute, page, redirect
from promptdeck.web.session import Member, checked_form, current_session, services, set_session_cookie
from promptdeck.web.settings_pages import FLASH_COOKIE, Done, flashed, form_text, take_flash

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
HOME = "/workspaces"
SWITCH = "/switch-workspace"


async def load_memberships(request: Request) -> None:
    """For the header's switcher: the signed-in member's active workspaces, in
    `request.state.memberships` (every console page depends on this; see web/console.py)."""
    session = await current_session(request)
    if session is not None and not session.member.must_change_password:
        request.state.memberships = await services(request).workspaces.memberships(session.member.email)


WithMemberships = Depends(load_memberships)


@router.post(SWITCH)
async def switch_workspace(request: Request, session: Session = Member) -> Response:
    """Move the session to the member's membership in the posted `workspace_id`."""
    form = await checked_form(request, session.csrf_token)
    app = services(request)
    target = await app.members.membership(session.member.email, form_text(form, "workspace_id"))
    await app.console_sessions.end(session.id)
    started, token = await app.console_sessions.start(target)
    request.state.console_session = started
    response = redirect("/")
    set_session_cookie(response, request, token)
    return response


def _caller(session: Session) -> Caller:
    member = session.member
    return Caller.member(member.workspace_id, member.email, member.role, instance_admin=member.instance_admin)


def _store(request: Request, session: Session) -> WorkspaceStore:
    if not session.member.instance_admin:
        raise Forbidden("the Workspaces page is for instance administrators")
    return services(request).workspaces


@router.get(HOME)
async def workspaces_page(request: Request, session: Session = Member) -> Response:
    done = take_flash(request)
    response = await _page(request, session, **(asdict(done) if done else {}))
    if FLASH_COOKIE in request.cookies:  # a new key is shown once: a reload does not show it again
        response.delete_cookie(FLASH_COOKIE, path=HOME)
    return response


@router.post(HOME)
async def create_workspace(request: Request, session: Session = Member) -> Response:
    try:
        store = _store(request, session)
        form = await checked_form(request, session.csrf_token)
        app = services(request)
        opened = await open_workspace(
            store, app.access, app.members, form_text(form, "name"), session.member.email
        )
    except PromptdeckError as error:
        posted = await request.form()
        kept = {"name": posted.get("name", "")}
        return await _page(
            request, session, HTTP_STATUS.get(error.code, 400), error=error.message, values=kept
        )
    created = opened.workspace
    await audit(request, _caller(session), "workspace.created", "workspace", created.id,
                after={"name": created.name}, workspace_id=None)  # fmt: skip
    done = Done(
        f"Workspace {created.name} created; you are its owner (switch to it in the header).",
        f"Admin API key for {created.name}: copy it now, it is not shown again",
        opened.secret,
    )
    return flashed(request, f"{HOME}#revealed", done, HOME)


@router.post(HOME + "/{workspace_id}/{action}")
async def act_on_workspace(
    workspace_id: str, action: str, request: Request, session: Session = Member
) -> Response:
    """`rename` (with `name`), `archive` or `restore`."""
    try:
        store = _store(request, session)
        form = await checked_form(request, session.csrf_token)
        before = await store.get(workspace_id)
        if action == "rename":
            after = await store.rename(workspace_id, form_text(form, "name"))
            changed: tuple[dict[str, Any], dict[str, Any]] = ({"name": before.name}, {"name": after.name})
            notice = f"Workspace {before.name} renamed to {after.name}."
        elif action == "archive":
            after = await store.archive(workspace_id, session.member.workspace_id)
            changed = (
                {"archived_at": None},
                {"archived_at": after.archived_at.isoformat() if after.archived_at else None},
            )
            notice = (
                f"Workspace {after.name} archived: its keys are refused and its members cannot sign in to it."
            )
        elif action == "restore":
            after = await store.restore(workspace_id)
            changed = (
                {"archived_at": before.archived_at.isoformat() if before.archived_at else None},
                {"archived_at": None},
            )
            notice = f"Workspace {after.name} restored."
        else:
            raise NotFound(f"no action {action!r} (rename, archive, restore)")
    except PromptdeckError as error:
        return await _page(request, session, HTTP_STATUS.get(error.code, 400), error=error.message)
    verb = {"rename": "renamed", "archive": "archived", "restore": "restored"}[action]
    await audit(
        request, _caller(session), f"workspace.{verb}", "workspace", workspace_id, *changed, workspace_id=None
    )
    return flashed(request, HOME, Done(notice), HOME)


async def _page(request: Request, session: Session, status: int = 200, **context: Any) -> Response:
    store = _store(request, session)
    return page(
        request,
        "workspaces.html",
        status,
        workspaces=await store.all(),
        current=session.member.workspace_id,
        mine={w.id for w in await store.memberships(session.member.email)},
        name_max=NAME_MAX,
        **context,
    )
