"""The admin API under `/api/`: prompts, versions, deployments, variants, keys and runs.

Reading needs the `read` (or `admin`) scope, every change `admin` (see `callers.admin_gate`).
Errors: `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field

from promptdeck.domain.errors import HTTP_STATUS, Forbidden, NotFound, PromptdeckError
from promptdeck.domain.keys import allows
from promptdeck.domain.reliability import parse_variant_config
from promptdeck.engine.auth import Caller
from promptdeck.engine.invoke import InvokeRequest
from promptdeck.store.catalog import deployment_dict, v_summary
from promptdeck.surfaces.callers import admin_caller, admin_gate, services
from promptdeck.surfaces.http import dialect_route, dumps


def render_error(error: PromptdeckError, request: Request | None = None) -> Response:
    body = {"error": {"code": error.code, "message": error.message, "details": error.details}}
    return Response(
        dumps(jsonable_encoder(body)), HTTP_STATUS.get(error.code, 500), media_type="application/json"
    )


router = APIRouter(prefix="/api", route_class=dialect_route(render_error, admin_gate), tags=["Admin"])
Admin = Depends(admin_caller)


class PromptIn(BaseModel):
    slug: str
    name: str = ""
    description: str = ""


class VersionIn(BaseModel):
    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    note: str = ""


def _default_variants() -> dict[str, int | Literal["latest"]]:
    return {"default": "latest"}


class DeploymentIn(BaseModel):
    name: str
    prompt: str = Field(description="slug of the prompt this deployment serves")
    variants: dict[str, int | Literal["latest"]] = Field(default_factory=_default_variants)
    default_variant: str | None = None


class MoveIn(BaseModel):
    version: int | Literal["latest"]
    note: str = ""


class CredentialIn(BaseModel):
    api_key: str = Field(description="the provider's secret; stored encrypted, never returned")
    base_url: str | None = Field(None, description="the upstream's base URL, when not the provider's default")


class PriceIn(BaseModel):
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None


class PayloadIn(BaseModel):
    variant: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    stream: bool = False


class KeyIn(BaseModel):
    name: str = "key"
    scopes: list[str] = Field(default_factory=lambda: ["invoke"])


@router.get("/health", summary="Liveness and run-writer metrics (no key needed)")
async def health(request: Request) -> dict[str, Any]:
    return {"status": "ok", "writer": asdict(services(request).writer.snapshot())}


@router.get("/prompts")
async def list_prompts(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return {"data": await services(request).catalog.list_prompts(caller.workspace_id)}


@router.post("/prompts", status_code=201)
async def create_prompt(body: PromptIn, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await services(request).catalog.create_prompt(
        caller.workspace_id, body.slug, body.name, body.description
    )


@router.get("/prompts/{slug}")
async def get_prompt(slug: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await services(request).catalog.get_prompt(caller.workspace_id, slug)


@router.get("/prompts/{slug}/versions")
async def list_versions(slug: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    versions = await services(request).catalog.list_versions(caller.workspace_id, slug)
    return {"data": [v_summary(v) for v in versions]}


@router.post("/prompts/{slug}/versions", status_code=201)
async def create_version(
    slug: str, body: VersionIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    app = services(request)
    version = await app.catalog.create_version(
        caller.workspace_id, slug, body.model_dump(), note=body.note, author=caller.key_name
    )
    app.catalog_changed()
    return v_summary(version)


@router.get("/prompts/{slug}/versions/{number}")
async def get_version(slug: str, number: int, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return v_summary(await services(request).catalog.get_version(caller.workspace_id, slug, number))


@router.get("/deployments")
async def list_deployments(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return {
        "data": [
            deployment_dict(d) for d in await services(request).catalog.list_deployments(caller.workspace_id)
        ]
    }


@router.post("/deployments", status_code=201)
async def create_deployment(body: DeploymentIn, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    app = services(request)
    deployment = await app.catalog.create_deployment(
        caller.workspace_id,
        body.name,
        body.prompt,
        dict(body.variants),
        body.default_variant,
        caller.key_name,
    )
    app.catalog_changed()
    return deployment_dict(deployment)


@router.get("/deployments/{name}")
async def get_deployment(name: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return deployment_dict(await services(request).catalog.load_deployment(caller.workspace_id, name))


@router.put(
    "/deployments/{name}/variants/{variant}", summary="Point a variant at a version (creating it if new)"
)
async def move_variant(
    name: str, variant: str, body: MoveIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    app = services(request)
    deployment = await app.catalog.move_variant(
        caller.workspace_id, name, variant, body.version, caller.key_name, body.note
    )
    app.catalog_changed()
    return deployment_dict(deployment)


@router.put(
    "/deployments/{name}/variants/{variant}/config",
    summary="Set a variant's time limits, retries and fallback chain",
)
async def set_variant_config(
    name: str, variant: str, config: dict[str, Any], request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    app = services(request)
    for fallback in parse_variant_config(config).fallbacks:  # every problem in the config at once, first
        app.providers.pick(fallback.model)  # a fallback must name a configured provider
    deployment = await app.catalog.set_variant_config(caller.workspace_id, name, variant, config)
    app.catalog_changed()
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
    app = services(request)
    stored = {c["provider"]: c for c in await app.credentials.list(caller.workspace_id)}
    return {
        "data": [
            {"name": name, "credential": stored.get(name)}  # never the secret itself
            for name in app.providers.names
        ]
    }


@router.put("/providers/{provider}/credential", summary="Store this workspace's credential (write-only)")
async def put_credential(
    provider: str, body: CredentialIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    app = services(request)
    if provider not in app.providers.names or provider == "local":
        raise NotFound(
            f"no provider {provider!r} takes credentials (providers: {', '.join(app.providers.names)})"
        )
    stored = await app.credentials.put(caller.workspace_id, provider, body.api_key, body.base_url)
    app.engine.forget_provider_settings()
    return stored


@router.delete("/providers/{provider}/credential", status_code=204)
async def delete_credential(provider: str, request: Request, caller: Caller = Admin) -> Response:
    app = services(request)
    await app.credentials.delete(caller.workspace_id, provider)
    app.engine.forget_provider_settings()
    return Response(status_code=204)


@router.get("/prices", summary="This workspace's price overrides (USD per million tokens)")
async def list_prices(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return {"data": await services(request).prices.list(caller.workspace_id)}


@router.put("/prices/{model:path}", summary="Set the price of a model (e.g. a custom or self-hosted one)")
async def put_price(model: str, body: PriceIn, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    app = services(request)
    price = await app.prices.put(caller.workspace_id, model, body.model_dump())
    app.engine.forget_provider_settings()
    return price


@router.delete("/prices/{model:path}", status_code=204)
async def delete_price(model: str, request: Request, caller: Caller = Admin) -> Response:
    app = services(request)
    await app.prices.delete(caller.workspace_id, model)
    app.engine.forget_provider_settings()
    return Response(status_code=204)


@router.post("/push", summary="Apply a prompt file (prompts as code); idempotent")
async def push(document: dict[str, Any], request: Request, caller: Caller = Admin) -> dict[str, Any]:
    app = services(request)
    report = await app.catalog.push(caller.workspace_id, document, actor=caller.key_name)
    if report.changed:
        app.catalog_changed()
    return report.to_dict()


@router.get("/keys")
async def list_keys(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    if not allows(caller.scopes, "admin"):  # key names are not for read-only keys
        raise Forbidden("listing API keys needs the 'admin' scope")
    return {"data": [k.to_dict() for k in await services(request).access.list_keys(caller.workspace_id)]}


@router.post("/keys", status_code=201, summary="Create an API key; the secret is in this answer only")
async def create_key(body: KeyIn, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    key, secret = await services(request).access.create_key(caller.workspace_id, body.name, body.scopes)
    return key.to_dict() | {"api_key": secret}


@router.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    app = services(request)
    key = await app.access.revoke_key(caller.workspace_id, key_id)
    app.keys.forget()
    return key.to_dict()


@router.get("/runs", summary="Runs, newest first; pass next_cursor back as cursor for the next page")
async def list_runs(
    request: Request,
    caller: Caller = Admin,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = None,
) -> dict[str, Any]:
    return await services(request).run_log.page(caller.workspace_id, limit, cursor)


@router.get("/runs/{run_id}", summary="One run, by id or request id")
async def get_run(run_id: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await services(request).find_run(caller.workspace_id, run_id)
