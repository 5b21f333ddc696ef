"""The Prompts screens: the list (and "New prompt"), the editor with its playground, the
version history and the diff between two versions.

The list, history and diff are rendered here from the same stores the admin API reads. The
editor and playground are JavaScript (static/editor.js, static/playground.js) over the
admin API — `POST /api/prompts/{slug}/versions` saves, `POST /api/playground/run` runs —
so this module only hands them the page's starting data.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic_core import to_jsonable_python

from promptdeck.admin_models import PromptIn
from promptdeck.catalog_views import prompt_detail, version_dict
from promptdeck.domain.errors import HTTP_STATUS, PromptdeckError, ValidationFailed
from promptdeck.domain.members import role_allows
from promptdeck.domain.prompts import INPUT_TYPES, PARAMETERS, REASONING_EFFORTS, ROLES
from promptdeck.domain.templating import TEMPLATE_SYNTAXES
from promptdeck.domain.version_diff import report
from promptdeck.engine.model_choices import model_choices
from promptdeck.store.console_sessions import Session
from promptdeck.store.prompt_overview import PromptOverview, PromptSummary, pointers_by_version
from promptdeck.web.diff_view import blocks
from promptdeck.web.pages import ConsoleRoute, page, redirect, validated
from promptdeck.web.session import CSRF_FIELD, Editor, Member, checked_form, services

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


def can_edit(session: Session) -> bool:
    return role_allows(session.member.role, "editor")


def matches(prompt: PromptSummary, query: str) -> bool:
    needle = query.strip().lower()
    return not needle or needle in prompt.slug.lower() or needle in prompt.name.lower()


async def list_page(
    request: Request, session: Session, q: str = "", status: int = 200, **context: Any
) -> Response:
    found = await PromptOverview(services(request).db).prompts(session.member.workspace_id)
    return page(
        request,
        "prompts.html",
        status,
        prompts=[p for p in found if matches(p, q)],
        total=len(found),
        q=q,
        can_edit=can_edit(session),
        **context,
    )


@router.get("/prompts")
async def prompts(request: Request, q: str = "", session: Session = Member) -> Response:
    return await list_page(request, session, q)


@router.post("/prompts")
async def create_prompt(request: Request, session: Session = Editor) -> Response:
    """ "New prompt": on success the editor of the new prompt; otherwise the list again with the
    error beside the form and what was typed kept."""
    try:
        form = await checked_form(request, session.csrf_token)
        fields = {k: v.strip() for k, v in form.items() if isinstance(v, str) and k != CSRF_FIELD}
        if not fields.get("slug"):
            raise ValidationFailed(
                "slug: required — the name callers and deployments use, e.g. support-reply"
            )
        body = validated(PromptIn, {k: fields.get(k, "") for k in ("slug", "name", "description")})
        await services(request).catalog.prompts.create_prompt(
            session.member.workspace_id, body.slug, body.name or body.slug, body.description
        )
    except PromptdeckError as error:
        posted = await request.form()
        kept = {k: v for k, v in posted.items() if isinstance(v, str) and k != CSRF_FIELD}
        return await list_page(
            request, session, status=HTTP_STATUS.get(error.code, 400), create_error=error.message, values=kept
        )
    return redirect(f"/prompts/{body.slug}")


def editor_data(
    prompt: dict[str, Any], session: Session, models: dict[str, list[str]], opened: dict[str, Any] | None
) -> dict[str, Any]:
    """What editor.js starts from (a JSON block in the page): the prompt, its versions (the
    newest in full), the version asked for with `?from=`, and the choices its controls offer."""
    versions = prompt["versions"]
    data: dict[str, Any] = to_jsonable_python(
        {
            "prompt": {k: prompt[k] for k in ("slug", "name", "description", "undeclared_variables")},
            "workspace": session.member.workspace_id,
            "versions": [
                {k: v[k] for k in ("number", "note", "author", "model", "created_at")}
                for v in reversed(versions)
            ],
            "latest": versions[-1] if versions else None,
            "opened": opened,
            "canEdit": can_edit(session),
            "models": models,
            "roles": ROLES,
            "inputTypes": INPUT_TYPES,
            "parameters": list(PARAMETERS),
            "reasoningEfforts": REASONING_EFFORTS,
            "templateSyntaxes": TEMPLATE_SYNTAXES,
        }
    )
    return data


async def prompt_with_versions(request: Request, workspace_id: str, slug: str) -> dict[str, Any]:
    """A prompt as the admin API shows it (`GET /api/prompts/{slug}`): what the pages and
    editor.js read."""
    prompts = services(request).catalog.prompts
    prompt = await prompts.get_prompt(workspace_id, slug)
    return prompt_detail(prompt, await prompts.list_versions(workspace_id, slug))


def version_number(raw: str, what: str) -> int | None:
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValidationFailed(f"{what}: expected a version number (1, 2, …); got {raw!r}")
    return int(raw)


def prompt_tab(
    request: Request, session: Session, prompt: dict[str, Any], tab: str, **context: Any
) -> Response:
    """A prompt's page open at one of its tabs (template `prompt_<tab>.html`): each shows the
    prompt's header, its versions newest first, and editing only to those who may edit."""
    return page(
        request,
        f"prompt_{tab}.html",
        prompt=prompt,
        tab=tab,
        versions=list(reversed(prompt["versions"])),
        can_edit=can_edit(session),
        **context,
    )


@router.get("/prompts/{slug}")
async def editor(request: Request, slug: str, session: Session = Member) -> Response:
    app = services(request)
    workspace_id = session.member.workspace_id
    prompt = await prompt_with_versions(request, workspace_id, slug)
    # `?from=<n>` ("Open in editor"), or `?version=<n>` (the logs' link to a run's version)
    asked = request.query_params.get("from") or request.query_params.get("version", "")
    number = version_number(asked, "from")
    opened = (
        version_dict(await app.catalog.prompts.get_version(workspace_id, slug, number)) if number else None
    )
    overridden = [price["model"] for price in await app.prices.list(workspace_id)]
    models = model_choices(app.providers, overridden)
    return prompt_tab(request, session, prompt, "editor", data=editor_data(prompt, session, models, opened))


@router.get("/prompts/{slug}/versions")
async def versions(request: Request, slug: str, session: Session = Member) -> Response:
    app = services(request)
    workspace_id = session.member.workspace_id
    prompt = await prompt_with_versions(request, workspace_id, slug)
    pointers = pointers_by_version(await PromptOverview(app.db).pointers(workspace_id, slug))
    return prompt_tab(request, session, prompt, "versions", pointers=pointers)


@router.get("/prompts/{slug}/diff")
async def diff(request: Request, slug: str, session: Session = Member) -> Response:
    app = services(request)
    workspace_id = session.member.workspace_id
    prompt = await prompt_with_versions(request, workspace_id, slug)
    numbers = [v["number"] for v in prompt["versions"]]
    to = version_number(request.query_params.get("to", ""), "to") or (numbers[-1] if numbers else None)
    since = version_number(request.query_params.get("from", ""), "from")
    if since is None and to is not None:
        since = max((n for n in numbers if n < to), default=to)
    compared = None
    if since is not None and to is not None:
        old = await app.catalog.prompts.get_version(workspace_id, slug, since)
        new = await app.catalog.prompts.get_version(workspace_id, slug, to)
        compared = report(slug, since, old.spec, to, new.spec)
    return prompt_tab(
        request,
        session,
        prompt,
        "diff",
        compared=compared,
        blocks=blocks(compared["changes"]) if compared else [],
    )
