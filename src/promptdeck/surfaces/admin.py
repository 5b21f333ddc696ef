"""The admin API under `/api/`: prompts, versions, deployments, variants, providers and prices
(keys, runs, feedback and retention: `admin_runs.py`).

Reading needs the `read` (or `admin`) scope, every change `admin` (see `callers.admin_gate`).
Errors: `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field

from promptdeck.admin_models import PromptIn
from promptdeck.audit_trail import audit, price_override, stored_credential
from promptdeck.catalog_views import (
    deployment_dict,
    prompt_detail,
    prompt_dict,
    prompt_list_item,
    push_report_dict,
    variant_move_dict,
    version_dict,
)
from promptdeck.domain.errors import HTTP_STATUS, PromptdeckError, ValidationFailed
from promptdeck.domain.prices import ModelName, PriceOverride
from promptdeck.domain.prompts import parse_spec
from promptdeck.domain.reliability import VariantConfig
from promptdeck.domain.run_filters import VERSION_NUMBER_MAX
from promptdeck.domain.version_diff import report
from promptdeck.engine.auth import Caller
from promptdeck.engine.invoke import InvokeRequest
from promptdeck.providers.registry import check_model
from promptdeck.store.workspace_archive import WorkspaceArchive
from promptdeck.surfaces.callers import admin_caller, admin_gate, services
from promptdeck.surfaces.error_shapes import ERRORS
from promptdeck.surfaces.http import dialect_route, dumps


def render_error(error: PromptdeckError, request: Request | None = None) -> Response:
    body = {"error": {"code": error.code, "message": error.message, "details": error.details}}
    return Response(
        dumps(jsonable_encoder(body)), HTTP_STATUS.get(error.code, 500), media_type="application/json"
    )


router = APIRouter(
    prefix="/api",
    route_class=dialect_route(render_error, admin_gate),
    tags=["Admin"],
    responses=ERRORS["admin"],
)
Admin = Depends(admin_caller)


class PromptPatch(BaseModel):
    name: str | None = None
    description: str | None = None
    undeclared_variables: str | None = Field(None, description="declare or refuse")


class VersionIn(BaseModel):
    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    template_syntax: str | None = Field(None, description="default ({{ name }}) or jinja2")
    extra_inputs: str | None = Field(None, description="allow (default) or forbid inputs not declared")
    note: str = ""


# A version number as the database can hold it; a larger one is refused (422), not passed on.
VersionNumber = Annotated[int, Field(ge=1, le=VERSION_NUMBER_MAX, description="version number")]


class DeploymentIn(BaseModel):
    name: str
    prompt: str = Field(description="slug of the prompt this deployment serves")
    variants: dict[str, VersionNumber | Literal["latest"]] | None = Field(
        None,
        description="variant -> version number, or 'latest' to follow each new version (an explicit "
        "choice); none: a variant 'default' pinned to the prompt's newest version",
    )
    default_variant: str | None = None


FORCE_PUSH = (
    "publish over versions newer than a file's `version`, and (with a reason) make moves the "
    "release check refuses"
)
FORCE_REASON = "why a forced move is safe; required when the release check refuses one, kept in history"


class MoveIn(BaseModel):
    version: VersionNumber | Literal["latest"]
    note: str = ""
    force: bool = Field(False, description="move even if recent callers' inputs say it is unsafe")
    reason: str = Field("", description="why a forced move is safe; required with force, kept in history")


class RollbackIn(BaseModel):
    note: str = ""
    force: bool = Field(False, description="roll back even if recent callers' inputs say it is unsafe")
    reason: str = Field("", description="why a forced rollback is safe; required with force, kept in history")


class CredentialIn(BaseModel):
    api_key: str = Field(description="the provider's secret; stored encrypted, never returned")
    base_url: str | None = Field(None, description="the upstream's base URL, when not the provider's default")


class PayloadIn(BaseModel):
    variant: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    stream: bool = False


@router.get("/health", summary="Liveness and run-writer metrics (no key needed)")
async def health(request: Request) -> dict[str, Any]:
    return {"status": "ok", "writer": asdict(services(request).writer.snapshot())}


@router.get("/prompts")
async def list_prompts(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    found = await services(request).catalog.prompts.list_prompts(caller.workspace_id)
    return {"data": [prompt_list_item(p) for p in found]}


@router.post("/prompts", status_code=201)
async def create_prompt(body: PromptIn, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    prompt = await services(request).catalog.prompts.create_prompt(
        caller.workspace_id, body.slug, body.name, body.description, body.undeclared_variables
    )
    return prompt_dict(prompt)


@router.get("/prompts/{slug}")
async def get_prompt(slug: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await _prompt_detail(request, caller.workspace_id, slug)


async def _prompt_detail(request: Request, workspace_id: str, slug: str) -> dict[str, Any]:
    prompts = services(request).catalog.prompts
    prompt = await prompts.get_prompt(workspace_id, slug)
    return prompt_detail(prompt, await prompts.list_versions(workspace_id, slug))


@router.patch("/prompts/{slug}", summary="Change a prompt's name, description or undeclared_variables")
async def update_prompt(
    slug: str, body: PromptPatch, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    await services(request).catalog.prompts.update_prompt(caller.workspace_id, slug, changes)
    return await _prompt_detail(request, caller.workspace_id, slug)


@router.get("/prompts/{slug}/versions")
async def list_versions(slug: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    versions = await services(request).catalog.prompts.list_versions(caller.workspace_id, slug)
    return {"data": [version_dict(v) for v in versions]}


@router.post("/prompts/{slug}/versions", status_code=201)
async def create_version(
    slug: str, body: VersionIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    app = services(request)
    raw = body.model_dump()
    check_model(app.providers, parse_spec(raw).model)  # the version's own problems first, all at once
    saved = await app.releases.save_version(
        caller.workspace_id, slug, raw, note=body.note, author=caller.actor
    )
    # What callers get now: saving deploys nothing, except to variants that follow `latest` and
    # pass the release check; `held` reports each follower the check left where it was.
    serving = await app.catalog.deployments.serving(caller.workspace_id, slug)
    return {**version_dict(saved.version), "serving": serving, "held": saved.held}


@router.get("/prompts/{slug}/versions/{number}")
async def get_version(
    slug: str,
    number: Annotated[int, Path(ge=1, le=VERSION_NUMBER_MAX, description="version number")],
    request: Request,
    caller: Caller = Admin,
) -> dict[str, Any]:
    version = await services(request).catalog.prompts.get_version(caller.workspace_id, slug, number)
    return version_dict(version)


@router.get("/prompts/{slug}/diff", summary="What changed between two versions of a prompt")
async def diff_versions(
    slug: str,
    request: Request,
    caller: Caller = Admin,
    from_: int = Query(..., alias="from", ge=1, le=VERSION_NUMBER_MAX, description="version number"),
    to: int = Query(..., ge=1, le=VERSION_NUMBER_MAX, description="version number"),
) -> dict[str, Any]:
    prompts = services(request).catalog.prompts
    old = await prompts.get_version(caller.workspace_id, slug, from_)
    new = await prompts.get_version(caller.workspace_id, slug, to)
    return report(slug, from_, old.spec, to, new.spec)


@router.get("/deployments")
async def list_deployments(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    found = await services(request).catalog.deployments.list_deployments(caller.workspace_id)
    return {"data": [deployment_dict(d) for d in found]}


@router.post("/deployments", status_code=201)
async def create_deployment(body: DeploymentIn, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    deployment = await services(request).catalog.deployments.create_deployment(
        caller.workspace_id,
        body.name,
        body.prompt,
        dict(body.variants) if body.variants is not None else None,
        body.default_variant,
        caller.actor,
    )
    return deployment_dict(deployment)


@router.get("/deployments/{name}")
async def get_deployment(name: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    deployment = await services(request).catalog.deployments.load_deployment(caller.workspace_id, name)
    return deployment_dict(deployment)


@router.delete("/deployments/{name}", status_code=204, summary="Remove a deployment and its variants")
async def delete_deployment(name: str, request: Request, caller: Caller = Admin) -> Response:
    await services(request).catalog.deployments.delete_deployment(caller.workspace_id, name)
    return Response(status_code=204)


@router.put(
    "/deployments/{name}/variants/{variant}", summary="Point a variant at a version (creating it if new)"
)
async def move_variant(
    name: str, variant: str, body: MoveIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    deployment = await services(request).releases.move(
        caller.workspace_id,
        name,
        variant,
        body.version,
        caller.actor,
        body.note,
        force=body.force,
        reason=body.reason,
    )
    return deployment_dict(deployment)


@router.get(
    "/deployments/{name}/variants/{variant}/history",
    summary="A variant's moves, newest first: who, when, from and to which version, and why",
)
async def variant_history(
    name: str, variant: str, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    """Newest first; `follows_latest` says whether each new version moves the variant."""
    store = services(request).catalog.deployments
    moves = await store.history(caller.workspace_id, name, variant)
    deployment = await store.load_deployment(caller.workspace_id, name)
    return {
        "data": [variant_move_dict(m) for m in moves],
        "follows_latest": deployment.follows_latest(variant),
    }


@router.post(
    "/deployments/{name}/variants/{variant}/rollback",
    summary="Move a variant back to the version it pointed at before its last move",
)
async def rollback_variant(
    name: str, variant: str, request: Request, caller: Caller = Admin, body: RollbackIn | None = None
) -> dict[str, Any]:
    given = body or RollbackIn.model_validate({})
    deployment = await services(request).releases.rollback(
        caller.workspace_id, name, variant, caller.actor, given.note, force=given.force, reason=given.reason
    )
    return deployment_dict(deployment)


@router.get(
    "/deployments/{name}/variants/{variant}/stats",
    summary="Per version served by a variant: runs, error rate, latency, tokens, cost, feedback",
)
async def variant_stats(name: str, variant: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    stats = await services(request).catalog.deployments.variant_stats(caller.workspace_id, name, variant)
    return {"deployment": name, "variant": variant, "data": stats}


@router.put(
    "/deployments/{name}/variants/{variant}/config",
    summary="Set a variant's time limits, retries, fallback chain and traffic split",
)
async def set_variant_config(
    name: str,
    variant: str,
    config: VariantConfig,
    request: Request,
    caller: Caller = Admin,
    force: bool = Query(False, description="add a split version the release check refuses anyway"),
    reason: str = Query("", max_length=500, description="why; required with force, kept in history"),
) -> dict[str, Any]:
    app = services(request)
    for fallback in config.fallbacks:  # the body's own problems were all listed as it was read
        check_model(app.providers, fallback.model)  # a fallback must be a model this server can call
    deployment = await app.releases.set_config(
        caller.workspace_id, name, variant, config, caller.actor, force=force, reason=reason
    )
    return deployment_dict(deployment)


@router.post(
    "/deployments/{name}/payload",
    summary="The exact request body the provider would receive for these inputs, without calling it",
)
async def provider_payload(
    name: str, body: PayloadIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    invoke = InvokeRequest(caller, "admin", name, body.variant, body.inputs, body.stream)
    return {"payload": await services(request).engine.payload(invoke)}


@router.get("/providers", summary="The configured providers, and which have a stored credential")
async def list_providers(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return {"data": await services(request).list_providers(caller.workspace_id)}  # never a secret


@router.put("/providers/{provider}/credential", summary="Store this workspace's credential (write-only)")
async def put_credential(
    provider: str, body: CredentialIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    app = services(request)
    before = await stored_credential(app, caller.workspace_id, provider)
    stored = await app.store_credential(caller.workspace_id, provider, body.api_key, body.base_url)
    await audit(request, caller, "credential.stored", "credential", provider, before, stored)
    return stored


@router.delete("/providers/{provider}/credential", status_code=204)
async def delete_credential(provider: str, request: Request, caller: Caller = Admin) -> Response:
    app = services(request)
    before = await stored_credential(app, caller.workspace_id, provider)
    await app.delete_credential(caller.workspace_id, provider)
    await audit(request, caller, "credential.deleted", "credential", provider, before, None)
    return Response(status_code=204)


@router.get("/prices", summary="This workspace's price overrides (USD per million tokens)")
async def list_prices(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return {"data": await services(request).prices.list(caller.workspace_id)}


@router.put("/prices/{model:path}", summary="Set the price of a model (e.g. a custom or self-hosted one)")
async def put_price(
    model: Annotated[ModelName, Path(description="provider/model")],
    body: PriceOverride,
    request: Request,
    caller: Caller = Admin,
) -> dict[str, Any]:
    app = services(request)
    before = await price_override(app, caller.workspace_id, model)
    after = await app.prices.put(caller.workspace_id, model, body)
    await audit(request, caller, "price.set", "price", model, before, after)
    return after


@router.delete("/prices/{model:path}", status_code=204)
async def delete_price(model: str, request: Request, caller: Caller = Admin) -> Response:
    app = services(request)
    before = await price_override(app, caller.workspace_id, model)
    await app.prices.delete(caller.workspace_id, model)
    await audit(request, caller, "price.deleted", "price", model, before, None)
    return Response(status_code=204)


@router.post("/push", summary="Apply a prompt file (prompts as code); idempotent")
async def push(
    document: dict[str, Any],
    request: Request,
    caller: Caller = Admin,
    force: bool = Query(False, description=FORCE_PUSH),
    reason: str = Query("", max_length=500, description=FORCE_REASON),
    dry_run: bool = Query(False, description="report what would change, and change nothing"),
) -> dict[str, Any]:
    app = services(request)
    reports = await app.releases.push_many(
        caller.workspace_id,
        [document],
        caller.actor,
        force=force,
        reason=reason,
        dry_run=dry_run,
        check_model=partial(check_model, app.providers),
    )
    return push_report_dict(reports[0])


class PushBatchIn(BaseModel):
    documents: list[dict[str, Any]]
    names: list[str] | None = Field(None, description="one per document (e.g. file names), for errors")


@router.post("/push/batch", summary="Apply several prompt files in one transaction: all or none")
async def push_batch(
    body: PushBatchIn,
    request: Request,
    caller: Caller = Admin,
    force: bool = Query(False, description=FORCE_PUSH),
    reason: str = Query("", max_length=500, description=FORCE_REASON),
    dry_run: bool = Query(False, description="report what would change, and change nothing"),
) -> dict[str, Any]:
    if body.names is not None and len(body.names) != len(body.documents):
        raise ValidationFailed("names: expected one name per document")
    app = services(request)
    reports = await app.releases.push_many(
        caller.workspace_id,
        body.documents,
        caller.actor,
        force=force,
        reason=reason,
        dry_run=dry_run,
        names=body.names,
        check_model=partial(check_model, app.providers),
    )
    changed = any(r.changed for r in reports)
    return {"reports": [push_report_dict(r) for r in reports], "changed": changed, "dry_run": dry_run}


@router.get("/pull", summary="Every prompt as the prompt-file document that reproduces it")
async def pull(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    archive = WorkspaceArchive(services(request).catalog)
    return {"documents": await archive.pull_documents(caller.workspace_id)}


@router.get(
    "/export",
    summary="The workspace's prompts, versions, deployments and variants as a .tar.gz",
    response_class=Response,
    responses={200: {"content": {"application/gzip": {}}}},
)
async def export_workspace(request: Request, caller: Caller = Admin) -> Response:
    archive = WorkspaceArchive(services(request).catalog)
    return Response(
        await archive.export_archive(caller.workspace_id),
        media_type="application/gzip",
        headers={"Content-Disposition": 'attachment; filename="promptdeck-workspace.tar.gz"'},
    )


@router.post(
    "/import",
    summary="Recreate an exported workspace's prompts and deployments here: all or nothing",
    openapi_extra={  # the body is read raw: an archive from GET /api/export
        "requestBody": {
            "required": True,
            "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def import_workspace(
    request: Request,
    caller: Caller = Admin,
    force: bool = Query(False, description="import variants the release check refuses anyway"),
    reason: str = Query("", max_length=500, description="why; required with force, kept in history"),
) -> dict[str, Any]:
    counts = await services(request).releases.import_archive(
        caller.workspace_id, await request.body(), caller.actor, force=force, reason=reason
    )
    return {"imported": counts}
