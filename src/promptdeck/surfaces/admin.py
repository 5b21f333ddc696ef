"""The admin API under `/api/`: prompts, versions, deployments, variants, keys and runs.

Reading needs the `read` (or `admin`) scope, every change `admin` (see `callers.admin_gate`).
Errors: `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from pydantic_core import to_json, to_jsonable_python

from promptdeck.admin_models import KeyIn, PromptIn, RetentionIn
from promptdeck.domain.errors import HTTP_STATUS, Forbidden, PromptdeckError, ValidationFailed
from promptdeck.domain.keys import allows
from promptdeck.domain.reliability import parse_variant_config
from promptdeck.domain.run_filters import VERSION_NUMBER_MAX, RunFilters, check_sort, parse_filters
from promptdeck.domain.runs import utcnow
from promptdeck.domain.version_diff import report
from promptdeck.engine.auth import Caller
from promptdeck.engine.invoke import InvokeRequest
from promptdeck.store.catalog import deployment_dict, v_summary
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


def _default_variants() -> dict[str, VersionNumber | Literal["latest"]]:
    return {"default": "latest"}


class DeploymentIn(BaseModel):
    name: str
    prompt: str = Field(description="slug of the prompt this deployment serves")
    variants: dict[str, VersionNumber | Literal["latest"]] = Field(default_factory=_default_variants)
    default_variant: str | None = None


class MoveIn(BaseModel):
    version: VersionNumber | Literal["latest"]
    note: str = ""
    force: bool = Field(False, description="move even if recent callers' inputs say it is unsafe")
    reason: str = Field("", description="why a forced move is safe; required with force, kept in history")


class RollbackIn(BaseModel):
    note: str = ""


class CredentialIn(BaseModel):
    api_key: str = Field(description="the provider's secret; stored encrypted, never returned")
    base_url: str | None = Field(None, description="the upstream's base URL, when not the provider's default")


class PriceIn(BaseModel):
    """USD per million tokens. Finite: FastAPI's JSON reader takes `NaN` and `Infinity`, which
    the price table cannot hold (NaN is stored as NULL: a 500; Infinity an endless cost)."""

    input_per_mtok: float = Field(allow_inf_nan=False)
    output_per_mtok: float = Field(allow_inf_nan=False)
    cached_input_per_mtok: float | None = Field(None, allow_inf_nan=False)
    cache_write_per_mtok: float | None = Field(None, allow_inf_nan=False)


class PayloadIn(BaseModel):
    variant: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    stream: bool = False


@router.get("/health", summary="Liveness and run-writer metrics (no key needed)")
async def health(request: Request) -> dict[str, Any]:
    return {"status": "ok", "writer": asdict(services(request).writer.snapshot())}


@router.get("/prompts")
async def list_prompts(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return {"data": await services(request).catalog.list_prompts(caller.workspace_id)}


@router.post("/prompts", status_code=201)
async def create_prompt(body: PromptIn, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await services(request).catalog.create_prompt(
        caller.workspace_id, body.slug, body.name, body.description, body.undeclared_variables
    )


@router.get("/prompts/{slug}")
async def get_prompt(slug: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await services(request).catalog.get_prompt(caller.workspace_id, slug)


@router.patch("/prompts/{slug}", summary="Change a prompt's name, description or undeclared_variables")
async def update_prompt(
    slug: str, body: PromptPatch, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    return await services(request).catalog.update_prompt(caller.workspace_id, slug, changes)


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
        caller.workspace_id, slug, body.model_dump(), note=body.note, author=caller.actor
    )
    app.catalog_changed()
    return v_summary(version)


@router.get("/prompts/{slug}/versions/{number}")
async def get_version(
    slug: str,
    number: Annotated[int, Path(ge=1, le=VERSION_NUMBER_MAX, description="version number")],
    request: Request,
    caller: Caller = Admin,
) -> dict[str, Any]:
    return v_summary(await services(request).catalog.get_version(caller.workspace_id, slug, number))


@router.get("/prompts/{slug}/diff", summary="What changed between two versions of a prompt")
async def diff_versions(
    slug: str,
    request: Request,
    caller: Caller = Admin,
    from_: int = Query(..., alias="from", ge=1, le=VERSION_NUMBER_MAX, description="version number"),
    to: int = Query(..., ge=1, le=VERSION_NUMBER_MAX, description="version number"),
) -> dict[str, Any]:
    catalog = services(request).catalog
    old = await catalog.get_version(caller.workspace_id, slug, from_)
    new = await catalog.get_version(caller.workspace_id, slug, to)
    return report(slug, from_, old.spec, to, new.spec)


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
        caller.actor,
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
        caller.workspace_id,
        name,
        variant,
        body.version,
        caller.actor,
        body.note,
        force=body.force,
        reason=body.reason,
    )
    app.catalog_changed()
    return deployment_dict(deployment)


@router.get(
    "/deployments/{name}/variants/{variant}/history",
    summary="A variant's moves, newest first: who, when, from and to which version, and why",
)
async def variant_history(
    name: str, variant: str, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    moves = await services(request).catalog.history(caller.workspace_id, name, variant)
    return {"data": moves}


@router.post(
    "/deployments/{name}/variants/{variant}/rollback",
    summary="Move a variant back to the version it pointed at before its last move",
)
async def rollback_variant(
    name: str, variant: str, request: Request, caller: Caller = Admin, body: RollbackIn | None = None
) -> dict[str, Any]:
    app = services(request)
    note = body.note if body else ""
    deployment = await app.catalog.rollback(caller.workspace_id, name, variant, caller.actor, note)
    app.catalog_changed()
    return deployment_dict(deployment)


@router.get(
    "/deployments/{name}/variants/{variant}/stats",
    summary="Per version served by a variant: runs, error rate, latency, tokens, cost, feedback",
)
async def variant_stats(name: str, variant: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    stats = await services(request).catalog.variant_stats(caller.workspace_id, name, variant)
    return {"deployment": name, "variant": variant, "data": stats}


@router.put(
    "/deployments/{name}/variants/{variant}/config",
    summary="Set a variant's time limits, retries, fallback chain and traffic split",
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
    return {"data": await services(request).list_providers(caller.workspace_id)}  # never a secret


@router.put("/providers/{provider}/credential", summary="Store this workspace's credential (write-only)")
async def put_credential(
    provider: str, body: CredentialIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    return await services(request).store_credential(
        caller.workspace_id, provider, body.api_key, body.base_url
    )


@router.delete("/providers/{provider}/credential", status_code=204)
async def delete_credential(provider: str, request: Request, caller: Caller = Admin) -> Response:
    await services(request).delete_credential(caller.workspace_id, provider)
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
async def push(
    document: dict[str, Any],
    request: Request,
    caller: Caller = Admin,
    force: bool = Query(False, description="publish even over versions newer than the file's `version`"),
    dry_run: bool = Query(False, description="report what would change, and change nothing"),
) -> dict[str, Any]:
    app = services(request)
    report = await app.catalog.push(
        caller.workspace_id, document, actor=caller.actor, force=force, dry_run=dry_run
    )
    if report.changed and not dry_run:
        app.catalog_changed()
    return report.to_dict()


class PushBatchIn(BaseModel):
    documents: list[dict[str, Any]]
    names: list[str] | None = Field(None, description="one per document (e.g. file names), for errors")


@router.post("/push/batch", summary="Apply several prompt files in one transaction: all or none")
async def push_batch(
    body: PushBatchIn,
    request: Request,
    caller: Caller = Admin,
    force: bool = Query(False, description="publish even over versions newer than a file's `version`"),
    dry_run: bool = Query(False, description="report what would change, and change nothing"),
) -> dict[str, Any]:
    if body.names is not None and len(body.names) != len(body.documents):
        raise ValidationFailed("names: expected one name per document")
    app = services(request)
    reports = await app.catalog.push_many(
        caller.workspace_id, body.documents, caller.actor, force=force, dry_run=dry_run, names=body.names
    )
    changed = any(r.changed for r in reports)
    if changed and not dry_run:
        app.catalog_changed()
    return {"reports": [r.to_dict() for r in reports], "changed": changed, "dry_run": dry_run}


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
async def import_workspace(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    app = services(request)
    counts = await WorkspaceArchive(app.catalog).import_archive(
        caller.workspace_id, await request.body(), actor=caller.actor
    )
    app.catalog_changed()
    return {"imported": counts}


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
    return (await services(request).revoke_key(caller.workspace_id, key_id)).to_dict()


class FeedbackIn(BaseModel):
    score: float | None = Field(None, ge=0, le=1, description="quality, 0 (worst) to 1 (best)")
    thumbs: Literal["up", "down"] | None = None
    correction: str | None = Field(None, description="what the answer should have been")
    metadata: dict[str, Any] | None = None


def run_filters(
    deployment: str | None = None,
    variant: str | None = None,
    version: str | None = Query(None, description="version number"),
    model: str | None = None,
    provider: str | None = None,
    status: str | None = Query(None, description="success | error"),
    user: str | None = Query(None, description="the end user"),
    since: str | None = Query(None, description="ISO 8601 time; runs at or after it"),
    until: str | None = Query(None, description="ISO 8601 time; runs before it"),
    q: str | None = Query(None, description="case-insensitive text in the inputs or the output"),
    meta: list[str] = Query(
        [], description="repeatable: key:value (equals), key (exists), key>n, key<n (numeric)"
    ),
) -> RunFilters:
    """FastAPI dependency: the run log's filters, every problem reported at once (422)."""
    return parse_filters(
        deployment=deployment,
        variant=variant,
        version=version,
        model=model,
        provider=provider,
        status=status,
        user=user,
        since=since,
        until=until,
        q=q,
        meta=meta,
    )


Filters = Depends(run_filters)
SORT_HELP = "time (default) | latency | cost | tokens"


@router.get("/runs", summary="Runs, filtered and sorted; pass next_cursor back as cursor for the next page")
async def list_runs(
    request: Request,
    caller: Caller = Admin,
    filters: RunFilters = Filters,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = None,
    sort: str = Query("time", description=SORT_HELP),
    order: str = Query("desc", description="desc (default) | asc"),
) -> dict[str, Any]:
    checked_sort, checked_order = check_sort(sort, order)
    return await services(request).run_log.page(
        caller.workspace_id, limit, cursor, filters, checked_sort, checked_order
    )


@router.get("/runs/metadata-keys", summary="The metadata keys of the last 7 days' runs, with examples")
async def metadata_keys(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await services(request).run_log.metadata_keys(caller.workspace_id)


CSV_COLUMNS = (
    "id",
    "request_id",
    "created_at",
    "dialect",
    "deployment",
    "variant",
    "version_number",
    "model",
    "provider",
    "status",
    "end_user",
    "external_id",
    "duration_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cost",
    "stop_reason",
    "error_code",
    "error_message",
    "inputs",
    "output",
    "metadata",
)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, datetime):
        return to_jsonable_python(value)
    return value


def _csv_line(values: list[Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue().encode()


@router.get(
    "/runs/export",
    summary="Every matching run as JSON Lines or CSV, streamed",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
)
async def export_runs(
    request: Request,
    caller: Caller = Admin,
    filters: RunFilters = Filters,
    format: str = Query("jsonl", description="jsonl | csv"),
    sort: str = Query("time", description=SORT_HELP),
    order: str = Query("desc", description="desc (default) | asc"),
) -> StreamingResponse:
    if format not in ("jsonl", "csv"):
        raise ValidationFailed(f"format: expected jsonl or csv; got {format!r}")
    checked_sort, checked_order = check_sort(sort, order)
    found = services(request).run_log.iterate(caller.workspace_id, filters, checked_sort, checked_order)

    async def jsonl() -> AsyncIterator[bytes]:
        async for run in found:
            yield to_json(run) + b"\n"  # times as the rest of the API writes them

    async def as_csv() -> AsyncIterator[bytes]:
        yield _csv_line(list(CSV_COLUMNS))
        async for run in found:
            yield _csv_line([_csv_cell(run.get(column)) for column in CSV_COLUMNS])

    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    media = "application/x-ndjson" if format == "jsonl" else "text/csv; charset=utf-8"
    return StreamingResponse(
        jsonl() if format == "jsonl" else as_csv(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="runs-{stamp}.{format}"'},
    )


@router.get("/runs/{run_id}", summary="One run, by id or request id, with its feedback")
async def get_run(run_id: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await services(request).find_run(caller.workspace_id, run_id)


@router.post("/runs/{run_id}/feedback", status_code=201, summary="Score, thumbs or a correction for a run")
async def add_feedback(
    run_id: str, body: FeedbackIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    if body.score is None and body.thumbs is None and body.correction is None:
        raise ValidationFailed("feedback needs at least one of score, thumbs, correction")
    app = services(request)
    run = await app.find_run(caller.workspace_id, run_id)
    (stored,) = await app.feedback.add(
        caller.workspace_id,
        [
            {
                "run_id": run["id"],
                "quality": body.score,
                "thumbs": body.thumbs,
                "text": body.correction,
                "metadata": body.metadata,
            }
        ],
    )
    return stored


@router.get("/settings/retention", summary="How long this workspace keeps its runs")
async def get_retention(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return {"days": await services(request).retention.get_days(caller.workspace_id)}


@router.put("/settings/retention", summary="Keep runs this many days (null: forever)")
async def put_retention(body: RetentionIn, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    app = services(request)
    await app.retention.set_days(caller.workspace_id, body.days)
    return {"days": body.days}
