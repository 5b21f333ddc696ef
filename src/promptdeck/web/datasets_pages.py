"""Datasets in the console: a prompt's Datasets tab (list, create), a dataset's page (its cases,
forms to add, edit and delete one, an upload box for JSONL or CSV files, delete the dataset), and
**Add to dataset** from a run's page in the logs.

Forms post and redirect (Post/Redirect/Get) with the outcome in the settings pages' flash cookie;
a refused form shows the page again with the message, and a bad file every problem with its line.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from starlette.datastructures import FormData, UploadFile

from promptdeck.domain.dataset_files import (
    DatasetFileError,
    case_from_data,
    case_problems,
    format_of,
    parse_cases,
)
from promptdeck.domain.datasets import DatasetCase
from promptdeck.domain.errors import HTTP_STATUS, PromptdeckError, ValidationFailed
from promptdeck.store.console_sessions import Session
from promptdeck.web.pages import ConsoleRoute, page
from promptdeck.web.prompts_pages import prompt_tab, prompt_with_versions
from promptdeck.web.session import Editor, Member, checked_form, services
from promptdeck.web.settings_pages import FLASH_COOKIE, Done, flashed, form_text, take_flash

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
FLASH_PATH = "/prompts"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def home(slug: str, name: str | None = None) -> str:
    base = f"/prompts/{quote(slug, safe='')}/datasets"
    return base if name is None else f"{base}/{quote(name, safe='')}"


@router.get("/prompts/{slug}/datasets")
async def datasets_tab(slug: str, request: Request, session: Session = Member) -> Response:
    return _read_once(request, await _list_page(request, session, slug, **_flash(request)))


@router.post("/prompts/{slug}/datasets")
async def create_dataset(slug: str, request: Request, session: Session = Editor) -> Response:
    form = await checked_form(request, session.csrf_token)  # refused: the 403 page
    try:
        name = form_text(form, "name")
        await services(request).datasets.create(
            session.member.workspace_id, slug, name, form_text(form, "description")
        )
    except PromptdeckError as error:
        posted = await request.form()
        kept = {"name": posted.get("name", ""), "description": posted.get("description", "")}
        status = HTTP_STATUS.get(error.code, 400)
        return await _list_page(request, session, slug, status, error=error.message, values=kept)
    return flashed(request, home(slug, name), Done(f"Dataset {name} created."), FLASH_PATH)


@router.get("/prompts/{slug}/datasets/{name}")
async def dataset_page(slug: str, name: str, request: Request, session: Session = Member) -> Response:
    editing = request.query_params.get("edit")
    return _read_once(
        request, await _detail_page(request, session, slug, name, editing=editing, **_flash(request))
    )


@router.post("/prompts/{slug}/datasets/{name}/{action}")
async def act_on_dataset(
    slug: str, name: str, action: str, request: Request, session: Session = Editor
) -> Response:
    """`cases` (add one), `upload` (a JSONL or CSV file) or `delete` (the dataset)."""
    store, workspace_id = services(request).datasets, session.member.workspace_id
    form = await checked_form(request, session.csrf_token)  # refused: the 403 page
    try:
        if action == "delete":
            await store.delete(workspace_id, slug, name)
            return flashed(
                request, home(slug), Done(f"Dataset {name} and its cases were deleted."), FLASH_PATH
            )
        if action == "cases":
            await store.add_cases(workspace_id, slug, name, [_case_from_form(form)])
            done = Done("Case added.")
        elif action == "upload":
            cases = await _uploaded(form)
            replace = form.get("replace") == "on"
            await (store.replace_cases if replace else store.add_cases)(workspace_id, slug, name, cases)
            done = Done(
                f"{len(cases)} cases {'replaced the old ones' if replace else 'added'} from the file."
            )
        else:
            raise ValidationFailed(f"no action {action!r} (cases, upload, delete)")
    except PromptdeckError as error:
        return await _refused(request, session, slug, name, error)
    return flashed(request, home(slug, name), done, FLASH_PATH)


@router.post("/prompts/{slug}/datasets/{name}/cases/{case_id}/{action}")
async def act_on_case(
    slug: str, name: str, case_id: str, action: str, request: Request, session: Session = Editor
) -> Response:
    """`edit` (replace its content) or `delete`."""
    store, workspace_id = services(request).datasets, session.member.workspace_id
    form = await checked_form(request, session.csrf_token)  # refused: the 403 page
    try:
        if action == "edit":
            await store.edit_case(workspace_id, slug, name, case_id, _case_from_form(form))
            done = Done("Case saved.")
        elif action == "delete":
            await store.delete_case(workspace_id, slug, name, case_id)
            done = Done("Case deleted.")
        else:
            raise ValidationFailed(f"no action {action!r} (edit, delete)")
    except PromptdeckError as error:
        return await _refused(
            request, session, slug, name, error, editing=case_id if action == "edit" else None
        )
    return flashed(request, home(slug, name), done, FLASH_PATH)


@router.get("/logs/{run_id}/add-to-dataset")
async def add_run_page(run_id: str, request: Request, session: Session = Editor) -> Response:
    return await _add_run_page(request, session, run_id)


@router.post("/logs/{run_id}/add-to-dataset")
async def add_run(run_id: str, request: Request, session: Session = Editor) -> Response:
    app, workspace_id = services(request), session.member.workspace_id
    form = await checked_form(request, session.csrf_token)  # refused: the 403 page
    try:
        run = await app.find_run(workspace_id, run_id)
        chosen = form_text(form, "dataset")
        name = form_text(form, "new_name") if chosen in ("", "__new__") else chosen
        expected = str(run.get("output") or "") if form.get("keep_output") == "on" else None
        dataset, _ = await app.datasets.add_from_run(
            workspace_id, run, name, expected, create=chosen == "__new__"
        )
    except PromptdeckError as error:
        return await _add_run_page(
            request, session, run_id, HTTP_STATUS.get(error.code, 400), error=error.message
        )
    done = Done(f"The run was added to {dataset.name} as case {dataset.case_count}.")
    return flashed(request, home(dataset.prompt, dataset.name), done, FLASH_PATH)


# ── pages ────────────────────────────────────────────────────────────────────


async def _list_page(
    request: Request, session: Session, slug: str, status: int = 200, **context: Any
) -> Response:
    workspace_id = session.member.workspace_id
    prompt = await prompt_with_versions(request, workspace_id, slug)
    datasets = await services(request).datasets.of_prompt(workspace_id, slug)
    response = prompt_tab(request, session, prompt, "datasets", datasets=datasets, **context)
    response.status_code = status
    return response


async def _detail_page(
    request: Request, session: Session, slug: str, name: str, status: int = 200, **context: Any
) -> Response:
    workspace_id, store = session.member.workspace_id, services(request).datasets
    prompt = await prompt_with_versions(request, workspace_id, slug)
    dataset = await store.dataset(workspace_id, slug, name)
    cases = await store.cases(workspace_id, slug, name)
    newest = prompt["versions"][-1] if prompt["versions"] else None
    declared = sorted((newest or {}).get("inputs") or {})
    response = prompt_tab(
        request,
        session,
        prompt,
        "dataset",
        dataset=dataset,
        cases=cases,
        as_json=_as_json,
        blank_inputs=_as_json(dict.fromkeys(declared, "")),
        **context,
    )
    response.status_code = status
    return response


async def _add_run_page(
    request: Request, session: Session, run_id: str, status: int = 200, **context: Any
) -> Response:
    app, workspace_id = services(request), session.member.workspace_id
    run = await app.find_run(workspace_id, run_id)
    slug = await app.datasets.prompt_of_run(workspace_id, run)
    datasets = await app.datasets.of_prompt(workspace_id, slug)
    return page(
        request, "add_to_dataset.html", status, run=run, prompt_slug=slug, datasets=datasets, **context
    )


async def _refused(
    request: Request,
    session: Session,
    slug: str,
    name: str,
    error: PromptdeckError,
    editing: str | None = None,
) -> Response:
    status = HTTP_STATUS.get(error.code, 400)
    problems = error.details if isinstance(error, DatasetFileError) else None
    message = (
        "The file was not imported: nothing changed. Fix these problems and upload it again."
        if problems
        else error.message
    )
    return await _detail_page(
        request, session, slug, name, status, error=message, problems=problems, editing=editing
    )


# ── forms ────────────────────────────────────────────────────────────────────


def _case_from_form(form: FormData) -> DatasetCase:
    """A case from the case form: inputs and chat history as JSON, tags separated by `,` or `;`."""
    raw: dict[str, Any] = {}
    problems = []
    for field, default in (("inputs", {}), ("chat_history", [])):
        text = form_text(form, field)
        try:
            raw[field] = json.loads(text) if text else default
        except json.JSONDecodeError as exc:
            problems.append(f"{field}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})")
    expected = form.get("expected", "")
    raw["expected"] = expected if isinstance(expected, str) and expected != "" else None
    raw["tags"] = [t.strip() for t in form_text(form, "tags").replace(";", ",").split(",") if t.strip()]
    if not problems:
        problems = [f"{f}: {p}" if f else p for f, p in case_problems(raw)]
    if problems:
        raise ValidationFailed("; ".join(problems), details=problems)
    return case_from_data(raw)


async def _uploaded(form: FormData) -> list[DatasetCase]:
    file = form.get("file")
    if not isinstance(file, UploadFile) or not file.filename:
        raise ValidationFailed("choose a .jsonl or .csv file to upload")
    file_format = format_of(file.filename)
    body = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(body) > MAX_UPLOAD_BYTES:
        raise ValidationFailed(f"the file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(f"{file.filename} is not UTF-8 text") from exc
    return parse_cases(text, file_format)


def _as_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _flash(request: Request) -> dict[str, Any]:
    done = take_flash(request)
    return {"notice": done.notice} if done else {}


def _read_once(request: Request, response: Response) -> Response:
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path=FLASH_PATH)
    return response
