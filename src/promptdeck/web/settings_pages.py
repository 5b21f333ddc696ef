"""Settings: API keys, provider credentials, console members and run retention.

Everyone signed in sees the page; only owners see its forms (and the API keys). Each form
posts to `/settings/...`; the answer is the page again with a notice, or with the error
next to what was typed (secrets are never sent back).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.datastructures import FormData

from promptdeck import key_changes
from promptdeck.admin_models import KeyIn, KeyRotateIn, RetentionIn
from promptdeck.audit_trail import audit, stored_credential
from promptdeck.domain.errors import HTTP_STATUS, PromptdeckError, ValidationFailed
from promptdeck.domain.keys import SCOPES
from promptdeck.domain.members import ROLES
from promptdeck.domain.runs import utcnow
from promptdeck.store.console_sessions import Session
from promptdeck.web.pages import ConsoleRoute, page, redirect, validated
from promptdeck.web.session import CSRF_FIELD, Member, Owner, caller_of, checked_form, is_https, services

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
SECRET_FIELDS = ("api_key", "password", CSRF_FIELD)
FLASH_COOKIE = "promptdeck_flash"


@dataclass
class Done:
    """What a settings form did: a notice, and maybe a secret shown this once."""

    notice: str
    reveal_label: str | None = None
    reveal_value: str | None = None


Action = Callable[[Request, Session, FormData], Awaitable[Done]]


async def settings_page(request: Request, session: Session, status: int = 200, **context: Any) -> Response:
    app = services(request)
    workspace_id = session.member.workspace_id
    owner = session.member.role == "owner"
    keys = await app.access.list_keys(workspace_id) if owner else []
    return page(
        request,
        "settings.html",
        status,
        owner=owner,
        keys=keys,
        rotated={k.rotated_from for k in keys if k.rotated_from},  # keys a rotation replaced
        prefix_of={k.id: k.prefix for k in keys},
        deployment_names=[d.name for d in await app.catalog.deployments.list_deployments(workspace_id)]
        if owner
        else [],
        now=utcnow(),
        providers=[
            p for p in await app.list_providers(workspace_id) if p["name"] in app.providers.credential_names
        ],
        members=await app.members.list(workspace_id),
        retention_days=await app.retention.get_days(workspace_id),
        scopes=SCOPES,
        roles=ROLES,
        **context,
    )


@router.get("/settings")
async def settings(request: Request, changed: str = "", session: Session = Member) -> Response:
    done = take_flash(request)
    if changed == "password":
        done = Done("Your password was changed; your other sessions were signed out.")
    response = await settings_page(request, session, **(asdict(done) if done else {}))
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/settings")
    return response


def take_flash(request: Request) -> Done | None:
    """The outcome a settings form left for the page it redirected to."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        return Done(**orjson.loads(base64.urlsafe_b64decode(raw)))
    except (ValueError, TypeError):
        return None


async def _act(request: Request, session: Session, section: str, action: Action) -> Response:
    """Check the form's CSRF token, do the action, and show the page again with the outcome."""
    try:
        form = await checked_form(request, session.csrf_token)
        done = await action(request, session, form)
    except PromptdeckError as error:
        posted = await request.form()
        kept = {k: v for k, v in posted.items() if isinstance(v, str) and k not in SECRET_FIELDS}
        return await settings_page(
            request, session, HTTP_STATUS.get(error.code, 400), error=error.message, values=kept
        )
    # Post/Redirect/Get: reloading the page must not send the form again (a second key...).
    # The outcome, with a secret to show once, rides in a cookie the next GET reads and clears.
    # A secret shown once is what the member came for: the page opens at it, the browser focuses
    # it (the fragment names it) and console.js selects it, ready to copy.
    return flashed(request, "/settings#revealed" if done.reveal_value else f"/settings#{section}", done)


def flashed(request: Request, to: str, done: Done, path: str = "/settings") -> Response:
    """A redirect to `to` whose outcome rides in a cookie for the pages under `path`: the next
    GET shows it once (a secret included) and clears it."""
    response = redirect(to)
    response.set_cookie(
        FLASH_COOKIE,
        base64.urlsafe_b64encode(orjson.dumps(asdict(done))).decode(),
        max_age=60,
        path=path,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return response


def form_text(form: FormData, name: str) -> str:
    """A form field's text, stripped; "" when it is missing or a file."""
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


@router.post("/settings/keys")
async def create_key(request: Request, session: Session = Owner) -> Response:
    async def act(request: Request, session: Session, form: FormData) -> Done:
        days = form_text(form, "key_expires_in_days")
        names = [str(n) for n in form.getlist("key_deployments") if str(n)]
        body = validated(
            KeyIn,
            {
                "name": form_text(form, "key_name") or "key",
                "scopes": form.getlist("key_scopes"),
                "deployments": names or None,  # none chosen: every deployment
                "expires_in_days": days or None,
            },
        )
        key, secret = await key_changes.create_key(request, caller_of(session), body)
        return Done(f"API key {key.name!r} created.", "Copy the new key now; it is not shown again", secret)

    return await _act(request, session, "keys", act)


@router.post("/settings/keys/{key_id}/revoke")
async def revoke_key(key_id: str, request: Request, session: Session = Owner) -> Response:
    async def act(request: Request, session: Session, form: FormData) -> Done:
        key = await key_changes.revoke_key(request, caller_of(session), key_id)
        return Done(f"API key {key.name!r} ({key.prefix}…) was revoked; it no longer works.")

    return await _act(request, session, "keys", act)


@router.post("/settings/keys/{key_id}/rotate")
async def rotate_key(key_id: str, request: Request, session: Session = Owner) -> Response:
    async def act(request: Request, session: Session, form: FormData) -> Done:
        grace = form_text(form, "grace_seconds")
        body = validated(KeyRotateIn, {"grace_seconds": grace or None})
        old, new, secret = await key_changes.rotate_key(request, caller_of(session), key_id, body)
        until = old.expires_at.strftime("%Y-%m-%d %H:%M UTC") if old.expires_at else "its expiry"
        return Done(
            f"API key {new.name!r} rotated: the old key ({old.prefix}…) works until {until}.",
            "Copy the new key now; it is not shown again",
            secret,
        )

    return await _act(request, session, "keys", act)


@router.post("/settings/providers/{provider}")
async def store_credential(provider: str, request: Request, session: Session = Owner) -> Response:
    async def act(request: Request, session: Session, form: FormData) -> Done:
        app, workspace_id = services(request), session.member.workspace_id
        before = await stored_credential(app, workspace_id, provider)
        stored = await app.store_credential(
            workspace_id, provider, form_text(form, "api_key"), form_text(form, "base_url") or None
        )
        await audit(request, caller_of(session), "credential.stored", "credential", provider, before, stored)
        return Done(f"The {provider} credential was stored (encrypted; it is never shown again).")

    return await _act(request, session, "providers", act)


@router.post("/settings/providers/{provider}/delete")
async def delete_credential(provider: str, request: Request, session: Session = Owner) -> Response:
    async def act(request: Request, session: Session, form: FormData) -> Done:
        app, workspace_id = services(request), session.member.workspace_id
        before = await stored_credential(app, workspace_id, provider)
        await app.delete_credential(workspace_id, provider)
        await audit(request, caller_of(session), "credential.deleted", "credential", provider, before)
        return Done(f"The stored {provider} credential was deleted.")

    return await _act(request, session, "providers", act)


@router.post("/settings/members/invite")
async def invite_member(request: Request, session: Session = Owner) -> Response:
    async def act(request: Request, session: Session, form: FormData) -> Done:
        invite, token = await services(request).members.invite(
            session.member.workspace_id,
            form_text(form, "invite_email"),
            form_text(form, "invite_role"),
            session.member.email,
        )
        invited = {"email": invite.email, "role": invite.role, "expires_at": invite.expires_at}
        await audit(request, caller_of(session), "member.invited", "member", invite.email, None, invited)
        link = str(request.base_url).rstrip("/") + f"/invite/{token}"
        return Done(
            f"{invite.email} is invited as {invite.role}.",
            f"Send this link to {invite.email} (valid 7 days, shown once)",
            link,
        )

    return await _act(request, session, "members", act)


@router.post("/settings/members/{member_id}/role")
async def set_role(member_id: str, request: Request, session: Session = Owner) -> Response:
    async def act(request: Request, session: Session, form: FormData) -> Done:
        members, workspace_id = services(request).members, session.member.workspace_id
        before = await members.get(workspace_id, member_id)
        member = await members.set_role(workspace_id, member_id, form_text(form, "role"))
        changed = {"role": before.role}, {"role": member.role}
        await audit(request, caller_of(session), "member.role_changed", "member", member.email, *changed)
        return Done(f"{member.email} is now {member.role}.")

    return await _act(request, session, "members", act)


@router.post("/settings/members/{member_id}/remove")
async def remove_member(member_id: str, request: Request, session: Session = Owner) -> Response:
    async def act(request: Request, session: Session, form: FormData) -> Done:
        member = await services(request).members.remove(session.member.workspace_id, member_id)
        await audit(request, caller_of(session), "member.removed", "member", member.email, member.to_dict())
        return Done(f"{member.email} was removed and signed out.")

    return await _act(request, session, "members", act)


@router.post("/settings/retention")
async def set_retention(request: Request, session: Session = Owner) -> Response:
    async def act(request: Request, session: Session, form: FormData) -> Done:
        raw = form_text(form, "retention_days")
        if raw and not raw.isdigit():
            raise ValidationFailed(
                f"days: a whole number of days, or empty to keep runs forever; got {raw!r}"
            )
        body = validated(RetentionIn, {"days": int(raw) if raw else None})
        retention, workspace_id = services(request).retention, session.member.workspace_id
        days = {"days": await retention.get_days(workspace_id)}, {"days": body.days}
        await retention.set_days(workspace_id, body.days)
        await audit(request, caller_of(session), "retention.set", "workspace", workspace_id, *days)
        kept = f"{body.days} day(s)" if body.days else "forever"
        return Done(f"Runs are now kept {kept}.")

    return await _act(request, session, "retention", act)
