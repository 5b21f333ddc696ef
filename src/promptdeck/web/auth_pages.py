"""Signing in and out, changing a password, and accepting an invitation."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from promptdeck.domain.errors import HTTP_STATUS, PromptdeckError, ValidationFailed
from promptdeck.store.console_members import Member as ConsoleMember
from promptdeck.store.console_sessions import Session
from promptdeck.web.pages import (
    ConsoleRoute,
    after_password_change,
    change_password_path,
    page,
    redirect,
    safe_next,
)
from promptdeck.web.session import (
    CSRF_FIELD,
    FORM_CSRF_COOKIE,
    CsrfRefused,
    Member,
    checked_form,
    clear_session_cookie,
    current_session,
    form_csrf_token,
    services,
    set_form_csrf_cookie,
    set_session_cookie,
)

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


def _anonymous_form(request: Request, template: str, status: int = 200, **context: object) -> Response:
    """A page with a form shown before sign-in, protected by the double-submit cookie."""
    token = form_csrf_token(request)
    response = page(request, template, status, form_csrf=token, **context)
    set_form_csrf_cookie(response, request, token)
    return response


async def _anonymous_post(request: Request) -> dict[str, str]:
    """The posted fields, once the form's token matches its cookie (raises CsrfRefused)."""
    form = await checked_form(request, request.cookies.get(FORM_CSRF_COOKIE))
    return {k: v for k, v in form.items() if isinstance(v, str) and k != CSRF_FIELD}


async def _start_session(request: Request, member: ConsoleMember, target: str) -> Response:
    """Sign the member in: a fresh session (never the one the browser came with)."""
    app = services(request)
    old = await current_session(request)
    if old is not None:
        await app.console_sessions.end(old.id)
    session, token = await app.console_sessions.start(member)
    request.state.console_session = session
    response = redirect(change_password_path(target) if session.member.must_change_password else target)
    set_session_cookie(response, request, token)
    return response


@router.get("/")
async def home() -> Response:
    return redirect("/prompts")


@router.get("/sign-in")
async def sign_in_form(request: Request, next: str = "/") -> Response:
    if await current_session(request) is not None:
        return redirect(safe_next(next))
    return _anonymous_form(request, "sign_in.html", next=safe_next(next), values={})


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    values: dict[str, str] = {}
    try:
        values = await _anonymous_post(request)
        address = request.client.host if request.client else ""  # failures pause this address
        member = await services(request).members.sign_in(
            values.get("email", ""), values.get("password", ""), address
        )
    except PromptdeckError as error:
        if isinstance(error, CsrfRefused):
            values = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        values.pop("password", None)
        response = _anonymous_form(
            request,
            "sign_in.html",
            HTTP_STATUS.get(error.code, 400),
            next=safe_next(values.get("next")),
            values=values,
            error=error.message,
        )
        response.headers.update(error.headers())  # Retry-After, once sign-in from here pauses
        return response
    return await _start_session(request, member, safe_next(values.get("next")))


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session = await current_session(request)
    if session is not None:
        await checked_form(request, session.csrf_token)
        await services(request).console_sessions.end(session.id)
    response = redirect("/sign-in")
    clear_session_cookie(response, request)
    return response


@router.get("/change-password")
async def change_password_form(request: Request, next: str = "", session: Session = Member) -> Response:
    forced = session.member.must_change_password
    return page(request, "change_password.html", forced=forced, next=safe_next(next, ""))


@router.post("/change-password")
async def change_password(request: Request, session: Session = Member) -> Response:
    forced = session.member.must_change_password
    target = ""
    try:
        form = await checked_form(request, session.csrf_token)
        target = safe_next(str(form.get("next", "")), "")
        new, confirm = str(form.get("new_password", "")), str(form.get("confirm_password", ""))
        if new != confirm:
            raise ValidationFailed("the two new passwords differ; type the same password twice")
        current = None if forced else str(form.get("current_password", ""))
        await services(request).members.change_password(session.member, new, current, keep_session=session.id)
    except PromptdeckError as error:
        status = HTTP_STATUS.get(error.code, 400)
        return page(request, "change_password.html", status, forced=forced, next=target, error=error.message)
    return redirect(after_password_change(target))


@router.get("/invite/{token}")
async def invite_form(token: str, request: Request) -> Response:
    invite = await services(request).members.find_invite(token)
    return _anonymous_form(request, "invite.html", invite=invite, values={})


@router.post("/invite/{token}")
async def accept_invite(token: str, request: Request) -> Response:
    members = services(request).members
    invite = await members.find_invite(token)
    values: dict[str, str] = {}
    try:
        values = await _anonymous_post(request)
        if values.get("password", "") != values.get("confirm_password", ""):
            raise ValidationFailed("the two passwords differ; type the same password twice")
        member = await members.accept_invite(token, values.get("name", ""), values.get("password", ""))
    except PromptdeckError as error:
        if isinstance(error, CsrfRefused):
            values = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        kept = {"name": values.get("name", "")}
        status = HTTP_STATUS.get(error.code, 400)
        return _anonymous_form(
            request, "invite.html", status, invite=invite, values=kept, error=error.message
        )
    return await _start_session(request, member, "/")
