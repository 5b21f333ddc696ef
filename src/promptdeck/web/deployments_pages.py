"""Deployments: the list (each deployment's prompt, variants, the versions they serve), and one
deployment's page (its variants, the chosen variant's move history, traffic split, statistics
and code snippets).

Pages are rendered from the catalog; every change (create, move, roll back, split) is made by
deployments.js through the admin API with the member's session, so the console and the API
share one implementation and its checks (roles, CSRF, unsafe promotions).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response

from promptdeck.catalog_views import variant_config_dict
from promptdeck.domain.deployments import Deployment
from promptdeck.domain.errors import NotFound
from promptdeck.domain.members import role_allows
from promptdeck.domain.reliability import SplitArm
from promptdeck.domain.runs import utcnow
from promptdeck.domain.usage_query import MAX_LIMIT, parse_usage_query
from promptdeck.store.console_sessions import Session
from promptdeck.web.pages import ConsoleRoute, page
from promptdeck.web.session import Member, services
from promptdeck.web.snippets import example_inputs, snippets

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


@dataclass(frozen=True)
class VariantRow:
    """One variant as the pages show it."""

    name: str
    version: int
    follows_latest: bool
    split: tuple[SplitArm, ...]
    is_default: bool
    href: str  # this variant's section of the deployment's page
    runs_href: str  # its runs in the logs


@dataclass(frozen=True)
class DeploymentView:
    name: str
    prompt: str
    default_variant: str
    newest_version: int | None
    variants: list[VariantRow]
    href: str
    runs_href: str  # the last 24 hours' runs in the logs


def logs_href(**filters: str) -> str:
    """The logs page filtered so (the numbers on a page lead to the runs behind them)."""
    return "/logs?" + urlencode({k: v for k, v in filters.items() if v})


def prompt_slug(deployment: Deployment) -> str:
    """The slug of the prompt a deployment serves (every variant serves a version of it)."""
    if deployment.newest is not None:
        return deployment.newest.prompt_slug
    return next(iter(deployment.variants.values())).prompt_slug if deployment.variants else ""


def view(deployment: Deployment) -> DeploymentView:
    href = f"/deployments/{deployment.name}"
    rows = [
        VariantRow(
            name=name,
            version=version.number,
            follows_latest=deployment.follows_latest(name),
            split=deployment.config(name).split,
            is_default=name == deployment.default_variant,
            href=f"{href}?{urlencode({'variant': name})}#variant",
            runs_href=logs_href(deployment=deployment.name, variant=name, range="24h"),
        )
        for name, version in sorted(deployment.variants.items(), key=lambda item: item[0])
    ]
    return DeploymentView(
        name=deployment.name,
        prompt=prompt_slug(deployment),
        default_variant=deployment.default_variant,
        newest_version=deployment.newest.number if deployment.newest else None,
        variants=rows,
        href=href,
        runs_href=logs_href(deployment=deployment.name, range="24h"),
    )


async def runs_last_day(request: Request, workspace_id: str) -> dict[str, int]:
    """Runs per deployment over the last 24 hours, from the usage rollups (what `GET /api/usage`
    reads; never the runs). Deployments past the busiest MAX_LIMIT are left out."""
    query = parse_usage_query(
        start=None,
        end=None,
        bucket="hour",
        group_by="deployment",
        deployment=None,
        limit=str(MAX_LIMIT),
        now=utcnow(),
    )
    answer = await services(request).usage.usage(workspace_id, query)
    return {s["group"]: s["totals"]["runs"] for s in answer["series"] if s["group"] and not s["other"]}


def can_edit(session: Session) -> bool:
    return role_allows(session.member.role, "editor")


@router.get("/deployments")
async def deployments(request: Request, session: Session = Member) -> Response:
    app = services(request)
    workspace_id = session.member.workspace_id
    found = await app.catalog.deployments.list_deployments(workspace_id)
    editor = can_edit(session)
    return page(
        request,
        "deployments.html",
        deployments=[view(d) for d in found],
        runs_24h=await runs_last_day(request, workspace_id),
        prompts=await app.catalog.prompts.list_prompts(workspace_id) if editor else [],
        can_edit=editor,
    )


@router.get("/deployments/{name}")
async def deployment_page(
    name: str, request: Request, variant: str = "", session: Session = Member
) -> Response:
    app = services(request)
    workspace_id = session.member.workspace_id
    deployment = await app.catalog.deployments.load_deployment(workspace_id, name)
    chosen = variant or deployment.default_variant
    if chosen not in deployment.variants:
        known = ", ".join(sorted(deployment.variants)) or "none"
        raise NotFound(f"deployment {name!r} has no variant {chosen!r} (variants: {known})")
    version = deployment.variants[chosen]
    shown = view(deployment)
    made = snippets(
        str(request.base_url),
        deployment.name,
        chosen,
        example_inputs(version.spec.inputs),
        default_variant=deployment.default_variant,
    )
    return page(
        request,
        "deployment.html",
        deployment=shown,
        chosen=next(row for row in shown.variants if row.name == chosen),
        version=version,
        input_names=list(version.spec.inputs),
        config=variant_config_dict(deployment, chosen),
        history=await app.catalog.deployments.history(workspace_id, name, chosen),
        versions=[v.number for v in await app.catalog.prompts.list_versions(workspace_id, shown.prompt)],
        snippets=made,
        can_edit=can_edit(session),
    )
