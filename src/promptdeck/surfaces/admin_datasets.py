"""The admin API's datasets under `/api/prompts/{slug}/datasets`: a prompt's datasets, their cases,
JSONL or CSV uploads (every problem of a bad file in one 422, nothing imported), the JSONL export,
and **Add to dataset** from a logged run. Same gate, scopes and error shape as `admin.py`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from promptdeck.domain.dataset_files import FORMATS, checked_cases, parse_cases, to_jsonl
from promptdeck.domain.datasets import Dataset, DatasetCase
from promptdeck.engine.auth import Caller
from promptdeck.surfaces.admin import Admin, render_error
from promptdeck.surfaces.callers import admin_gate, services
from promptdeck.surfaces.error_shapes import ERRORS
from promptdeck.surfaces.http import dialect_route

router = APIRouter(
    prefix="/api",
    route_class=dialect_route(render_error, admin_gate),
    tags=["Datasets"],
    responses=ERRORS["admin"],
)
BASE = "/prompts/{slug}/datasets"
ONE = BASE + "/{name}"
EVALUATORS = "evaluator specs that judge the cases (docs/evaluations.md), each an object with a `type`"


class CaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any] = Field(..., description="the inputs a caller would send")
    expected: str | None = Field(None, description="the output expected, if any")
    chat_history: list[dict[str, Any]] = Field(default_factory=list, description="[{role, content}]")
    tags: list[str] = Field(default_factory=list)


class CasesIn(BaseModel):
    cases: list[CaseIn]


class DatasetIn(BaseModel):
    name: str = Field(..., max_length=100)
    description: str = ""
    evaluators: list[dict[str, Any]] = Field(default_factory=list, description=EVALUATORS)
    cases: list[CaseIn] = Field(default_factory=list)


class DatasetPatch(BaseModel):
    name: str | None = Field(None, max_length=100, description="a new name")
    description: str | None = None
    evaluators: list[dict[str, Any]] | None = Field(None, description=EVALUATORS)


class UploadIn(BaseModel):
    format: Literal["jsonl", "csv"] = Field(..., description=f"one of {', '.join(FORMATS)}")
    content: str = Field(..., description="the file's text")
    replace: bool = Field(False, description="replace every case instead of adding after the last")


class AddFromRunIn(BaseModel):
    dataset: str = Field(..., max_length=100, description="a dataset of the run's prompt")
    expected: str | None = Field(
        None,
        description='"output" keeps the run\'s output as the expected output; any other text is kept as is',
    )
    create: bool = Field(False, description="create the dataset if the prompt has none of that name")


def dataset_dict(dataset: Dataset) -> dict[str, Any]:
    return asdict(dataset)


def case_dict(case: DatasetCase) -> dict[str, Any]:
    return asdict(case)


def _cases(body: list[CaseIn]) -> list[DatasetCase]:
    return checked_cases([c.model_dump() for c in body])


@router.get(BASE, summary="A prompt's datasets, each with its number of cases")
async def list_datasets(slug: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    found = await services(request).datasets.of_prompt(caller.workspace_id, slug)
    return {"data": [dataset_dict(d) for d in found]}


@router.post(BASE, status_code=201, summary="Create a dataset, optionally with its first cases")
async def create_dataset(
    slug: str, body: DatasetIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    store = services(request).datasets
    cases = _cases(body.cases)  # checked before anything is created
    await store.create(caller.workspace_id, slug, body.name, body.description, body.evaluators)
    if cases:
        await store.add_cases(caller.workspace_id, slug, body.name, cases)
    return dataset_dict(await store.dataset(caller.workspace_id, slug, body.name))


@router.get(ONE)
async def get_dataset(slug: str, name: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return dataset_dict(await services(request).datasets.dataset(caller.workspace_id, slug, name))


@router.patch(ONE, summary="Rename, or change the description or evaluators")
async def update_dataset(
    slug: str, name: str, body: DatasetPatch, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    return dataset_dict(await services(request).datasets.update(caller.workspace_id, slug, name, changes))


@router.delete(ONE, status_code=204, summary="Delete a dataset and its cases")
async def delete_dataset(slug: str, name: str, request: Request, caller: Caller = Admin) -> Response:
    await services(request).datasets.delete(caller.workspace_id, slug, name)
    return Response(status_code=204)


@router.get(ONE + "/cases", summary="Every case, in order")
async def list_cases(slug: str, name: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    cases = await services(request).datasets.cases(caller.workspace_id, slug, name)
    return {"data": [case_dict(c) for c in cases]}


@router.post(ONE + "/cases", status_code=201, summary="Add cases after the last one (all or none)")
async def add_cases(
    slug: str, name: str, body: CasesIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    added = await services(request).datasets.add_cases(caller.workspace_id, slug, name, _cases(body.cases))
    return {"data": [case_dict(c) for c in added]}


@router.put(ONE + "/cases", summary="Replace every case (all or none)")
async def replace_cases(
    slug: str, name: str, body: CasesIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    stored = await services(request).datasets.replace_cases(
        caller.workspace_id, slug, name, _cases(body.cases)
    )
    return {"data": [case_dict(c) for c in stored]}


@router.put(ONE + "/cases/{case_id}", summary="Change one case (it keeps its place and source run)")
async def edit_case(
    slug: str, name: str, case_id: str, body: CaseIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    (case,) = _cases([body])
    edited = await services(request).datasets.edit_case(caller.workspace_id, slug, name, case_id, case)
    return case_dict(edited)


@router.delete(ONE + "/cases/{case_id}", status_code=204)
async def delete_case(
    slug: str, name: str, case_id: str, request: Request, caller: Caller = Admin
) -> Response:
    await services(request).datasets.delete_case(caller.workspace_id, slug, name, case_id)
    return Response(status_code=204)


@router.post(
    ONE + "/upload",
    summary="Import a JSONL or CSV file's cases; a bad file is refused whole, every problem listed",
)
async def upload_cases(
    slug: str, name: str, body: UploadIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    store = services(request).datasets
    await store.dataset(caller.workspace_id, slug, name)  # a missing dataset before the file's problems
    cases = parse_cases(body.content, body.format)
    write = store.replace_cases if body.replace else store.add_cases
    stored = await write(caller.workspace_id, slug, name, cases)
    return {
        "imported": len(stored),
        "dataset": dataset_dict(await store.dataset(caller.workspace_id, slug, name)),
    }


@router.get(
    ONE + "/export",
    summary="Every case as JSONL (one object per line), the form `upload` reads",
    response_class=Response,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def export_cases(slug: str, name: str, request: Request, caller: Caller = Admin) -> Response:
    cases = await services(request).datasets.cases(caller.workspace_id, slug, name)
    return Response(
        to_jsonl(cases),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{slug}-{name}.jsonl"'},
    )


@router.post(
    "/runs/{run_id}/add-to-dataset",
    status_code=201,
    summary="Make a logged run a test case of its prompt's dataset (Add to dataset)",
)
async def add_run_to_dataset(
    run_id: str, body: AddFromRunIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    app = services(request)
    run = await app.find_run(caller.workspace_id, run_id)
    expected = str(run.get("output") or "") if body.expected == "output" else body.expected
    dataset, case = await app.datasets.add_from_run(
        caller.workspace_id, run, body.dataset, expected, create=body.create
    )
    return {"dataset": dataset_dict(dataset), "case": case_dict(case)}
