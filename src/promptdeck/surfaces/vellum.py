"""The Vellum dialect (WIRE.md §2): `/v1/execute-prompt`, `/v1/execute-prompt-stream` (NDJSON),
`/v1/submit-completion-actuals` and `/v1/deployments/provider-payload`.

Choices where Vellum is silent (docs/dialects.md says the same for callers):

* `release_tag` `LATEST` (or none) is promptdeck's `latest`: the prompt's newest version (a variant
  named `latest`, if the deployment has one); any other tag names a variant.
* CHAT_HISTORY inputs are appended, in order, after the version's own messages; they are not
  template variables.
* `execution_id` is the run's id written as a UUID; look-ups take it with or without dashes.
* `expand_raw` names top-level keys of the provider's own JSON answer that execute-prompt returns
  in `raw` (unknown keys are left out; the embedded model has no raw answer, and the NDJSON
  stream carries none).
* A reasoning model's thoughts are a THINKING output; tool calls are FUNCTION_CALL outputs, sent
  whole (arguments as an object) once the answer is complete.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from promptdeck.domain.deployments import Deployment
from promptdeck.domain.errors import (
    Forbidden,
    NotFound,
    PromptdeckError,
    Unauthorized,
    ValidationFailed,
)
from promptdeck.domain.events import (
    LENGTH,
    STOP,
    TOOL_CALLS,
    Failed,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
)
from promptdeck.domain.runs import RunRecord
from promptdeck.engine.auth import Caller, bearer
from promptdeck.engine.invoke import Invocation, InvokeRequest
from promptdeck.services import Services
from promptdeck.surfaces.callers import services
from promptdeck.surfaces.error_shapes import ERRORS
from promptdeck.surfaces.http import (
    dialect_route,
    dumps,
    json_body,
    json_object,
    unless_disconnected,
    with_keepalive,
)

LATEST = "LATEST"
STATUS = {
    "validation_error": 400,
    "bad_request": 400,
    "conflict": 400,
    "unauthorized": 403,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "payload_too_large": 413,
    "too_many_requests": 429,
}
FINISH_REASONS = {STOP: "STOP", LENGTH: "LENGTH", TOOL_CALLS: "STOP"}  # anything else: UNKNOWN
ROLES = {"SYSTEM": "system", "USER": "user", "ASSISTANT": "assistant", "FUNCTION": "tool"}
MEDIA_INPUTS = ("IMAGE", "AUDIO", "VIDEO", "DOCUMENT")
META_FIELDS = (
    "model_name",
    "usage",
    "cost",
    "finish_reason",
    "latency",
    "deployment_release_tag",
    "prompt_version_id",
)
# What each answer may carry in `meta` (the client's types for each event).
INITIATED_META = frozenset({"model_name", "latency", "deployment_release_tag", "prompt_version_id"})
FULFILLED_META = frozenset({"latency", "finish_reason", "usage", "cost"})
REJECTED_META = frozenset({"latency", "finish_reason"})
KEEPALIVE = b"\n"
NDJSON = "application/x-ndjson"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def render_error(error: PromptdeckError, request: Request | None = None) -> Response:
    status = STATUS.get(error.code, 500)
    return Response(dumps({"detail": error.message}), status, error.headers(), media_type="application/json")


router = APIRouter(route_class=dialect_route(render_error), tags=["Vellum"], responses=ERRORS["vellum"])


async def vellum_caller(request: Request) -> Caller:
    """The key from `X-API-KEY` (or the older `X_API_KEY`, or a bearer token); Vellum answers
    every key problem with 403."""
    headers = request.headers
    secret = headers.get("x-api-key") or headers.get("x_api_key") or bearer(headers.get("authorization"))
    try:
        return await services(request).keys.caller(secret, "invoke")
    except Unauthorized as exc:
        raise Forbidden(exc.message) from exc


# ── ids ─────────────────────────────────────────────────────────────────────


def as_uuid(hex_id: str) -> str:
    return str(uuid.UUID(hex_id))


def id_hex(value: str) -> str | None:
    """An id in either form (UUID with dashes, or 32 hex digits) as stored; None if it is neither."""
    try:
        return uuid.UUID(value).hex
    except ValueError:
        return None


def execution_id(record: RunRecord) -> str:
    return as_uuid(record.id)


# ── parsing ─────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class Execution:
    """An execute-prompt (or provider-payload) request, checked."""

    deployment_name: str | None
    deployment_id: str | None  # as stored (hex)
    release_tag: str
    inputs: dict[str, Any]
    messages: list[dict[str, Any]] | None
    expand_meta: frozenset[str] = frozenset()
    external_id: str | None = None
    raw_overrides: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    expand_raw: tuple[str, ...] = ()


@dataclass
class Problems:
    found: list[str] = field(default_factory=list)

    def add(self, problem: str) -> None:
        self.found.append(problem)

    def raise_any(self) -> None:
        if self.found:
            raise ValidationFailed("invalid request: " + "; ".join(self.found), details=self.found)


def parse_execution(body: Any, id_field: str, name_field: str, *, payload: bool = False) -> Execution:
    """Check an execute-prompt body (or, with `payload`, a provider-payload body), reporting every
    problem at once."""
    body = json_object(body)
    problems = Problems()
    deployment_id, deployment_name = _deployment(body, id_field, name_field, problems)
    release_tag = body.get("release_tag")
    if release_tag is None:
        release_tag = LATEST
    elif not isinstance(release_tag, str) or not release_tag:
        problems.add("release_tag: expected a non-empty string")
    inputs, messages = _inputs(body.get("inputs"), problems)
    expand_meta = _expand_meta(body.get("expand_meta"), problems)
    external_id = raw_overrides = metadata = expand_raw = None
    if not payload:
        external_id = body.get("external_id")
        if external_id is not None and (not isinstance(external_id, str) or not 0 < len(external_id) <= 200):
            problems.add("external_id: expected a string of 1 to 200 characters")
        raw_overrides = _raw_overrides(body.get("raw_overrides"), problems)
        expand_raw = body.get("expand_raw")
        if expand_raw is not None and (
            not isinstance(expand_raw, list) or not all(isinstance(k, str) for k in expand_raw)
        ):
            problems.add("expand_raw: expected an array of strings")
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            problems.add("metadata: expected an object")
    problems.raise_any()
    return Execution(
        deployment_name,
        deployment_id,
        str(release_tag),
        inputs,
        messages or None,
        expand_meta,
        external_id,
        raw_overrides,
        metadata or None,
        tuple(expand_raw or ()) if not payload else (),
    )


def _deployment(
    body: dict[str, Any], id_field: str, name_field: str, problems: Problems
) -> tuple[str | None, str | None]:
    given_id, name = body.get(id_field), body.get(name_field)
    if (given_id is None) == (name is None):
        problems.add(f"give exactly one of {id_field} and {name_field}")
        return None, None
    if name is not None:
        if not isinstance(name, str) or not name:
            problems.add(f"{name_field}: expected a non-empty string")
        return None, name if isinstance(name, str) else None
    hex_id = id_hex(given_id) if isinstance(given_id, str) else None
    if hex_id is None:
        problems.add(f"{id_field}: expected a deployment id (a UUID)")
    return hex_id, None


def _inputs(given: Any, problems: Problems) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not isinstance(given, list):
        problems.add("inputs: required, an array of {name, type, value} (may be empty)")
        return {}, []
    values: dict[str, Any] = {}
    messages: list[dict[str, Any]] = []
    seen: set[str] = set()
    for position, item in enumerate(given):
        where = f"inputs[{position}]"
        if not isinstance(item, dict):
            problems.add(f"{where}: expected an object")
            continue
        name, kind, value = item.get("name"), item.get("type"), item.get("value")
        if not isinstance(name, str) or not name:
            problems.add(f"{where}.name: expected a non-empty string")
            continue
        where = f"input {name!r}"
        if name in seen:
            problems.add(f"{where} is given twice")
            continue
        seen.add(name)
        if kind == "STRING":
            if isinstance(value, str):
                values[name] = value
            else:
                problems.add(f"{where}: a STRING input needs a string value")
        elif kind == "JSON":
            values[name] = value
        elif kind == "CHAT_HISTORY":
            if isinstance(value, list):
                messages += [_message(m, f"{where}[{i}]", problems) for i, m in enumerate(value)]
            else:
                problems.add(f"{where}: a CHAT_HISTORY input needs an array of chat messages")
        elif kind in MEDIA_INPUTS:
            problems.add(f"{where}: {kind} inputs are not supported yet; send STRING, JSON or CHAT_HISTORY")
        else:
            problems.add(f"{where}: unknown type {kind!r}; expected STRING, JSON or CHAT_HISTORY")
    return values, messages


def _message(given: Any, where: str, problems: Problems) -> dict[str, Any]:
    """A Vellum chat message as a neutral one (providers/base.py)."""
    if not isinstance(given, dict):
        problems.add(f"{where}: expected a chat message object")
        return {}
    role = ROLES.get(given.get("role"))  # type: ignore[arg-type]
    if role is None:
        problems.add(f"{where}.role: expected one of {', '.join(ROLES)}")
        return {}
    text = given.get("text")
    if text is not None and not isinstance(text, str):
        problems.add(f"{where}.text: expected a string")
        text = None
    parts: list[str] = []
    calls: list[dict[str, Any]] = []
    content = given.get("content")
    if content is not None:
        items = content.get("value") if isinstance(content, dict) and content.get("type") == "ARRAY" else None
        if isinstance(items, list):
            for i, item in enumerate(items):
                _content(item, f"{where}.content.value[{i}]", parts, calls, problems)
        else:
            _content(content, f"{where}.content", parts, calls, problems)
    elif text is not None:
        parts.append(text)
    message: dict[str, Any] = {"role": role, "content": "".join(parts)}
    if calls:
        if role != "assistant":
            problems.add(f"{where}: only ASSISTANT messages may carry FUNCTION_CALL content")
        message["tool_calls"] = calls
    if role == "tool":
        source = given.get("source")
        if not isinstance(source, str) or not source:
            problems.add(f"{where}.source: a FUNCTION message needs the id of the function call it answers")
        message["tool_call_id"] = source
    return message


def _content(
    given: Any, where: str, parts: list[str], calls: list[dict[str, Any]], problems: Problems
) -> None:
    kind = given.get("type") if isinstance(given, dict) else None
    value = given.get("value") if isinstance(given, dict) else None
    if kind == "STRING" and isinstance(value, str):
        parts.append(value)
    elif kind == "FUNCTION_CALL" and isinstance(value, dict):
        name, arguments, call_id = value.get("name"), value.get("arguments"), value.get("id")
        if not isinstance(name, str) or not isinstance(arguments, dict):
            problems.add(f"{where}: a FUNCTION_CALL needs a string name and an object of arguments")
            return
        call_id = call_id if isinstance(call_id, str) and call_id else f"call_{len(calls)}"
        calls.append({"id": call_id, "name": name, "arguments": orjson.dumps(arguments).decode()})
    elif kind in MEDIA_INPUTS:
        problems.add(f"{where}: {kind} content is not supported yet")
    else:
        problems.add(f"{where}: expected STRING, FUNCTION_CALL or ARRAY content with a matching value")


def _expand_meta(given: Any, problems: Problems) -> frozenset[str]:
    if given is None:
        return frozenset()
    if not isinstance(given, dict):
        problems.add("expand_meta: expected an object of booleans")
        return frozenset()
    wrong = [k for k, v in given.items() if v is not None and not isinstance(v, bool)]
    if wrong:
        problems.add(f"expand_meta: {', '.join(wrong)}: expected true, false or null")
    return frozenset(k for k in META_FIELDS if given.get(k) is True)


def _raw_overrides(given: Any, problems: Problems) -> dict[str, Any] | None:
    if given is None:
        return None
    if not isinstance(given, dict):
        problems.add("raw_overrides: expected an object {body?, headers?, url?}")
        return None
    body, headers, url = given.get("body"), given.get("headers"), given.get("url")
    if body is not None and not isinstance(body, dict):
        problems.add("raw_overrides.body: expected an object")
    if headers is not None and (
        not isinstance(headers, dict) or not all(v is None or isinstance(v, str) for v in headers.values())
    ):
        problems.add("raw_overrides.headers: expected an object of strings")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        problems.add("raw_overrides.url: expected an http(s) URL")
    overrides: dict[str, Any] = {}
    if isinstance(body, dict) and body:
        overrides["body"] = body
    if isinstance(headers, dict) and headers:
        overrides["headers"] = {k: v for k, v in headers.items() if v is not None}
    if isinstance(url, str):
        overrides["url"] = url
    return overrides or None


# ── deployments by id, external ids ─────────────────────────────────────────


async def deployment_name(request: Request, caller: Caller, parsed: Execution) -> str:
    if parsed.deployment_name is not None:
        return parsed.deployment_name
    assert parsed.deployment_id is not None
    name = await services(request).vellum.deployment_name(caller.workspace_id, parsed.deployment_id)
    if name is None:
        raise NotFound(f"no prompt deployment with id {as_uuid(parsed.deployment_id)!r}")
    return name


async def reserve_external_id(
    request: Request, caller: Caller, external_id: str | None
) -> Callable[[], None]:
    """Claim an external id for a new run, or refuse a duplicate; returns the release, to call
    once the run is with the writer (whose pending runs are checked too)."""
    return await services(request).vellum.reserve_external_id(caller.workspace_id, external_id)


# ── answers ─────────────────────────────────────────────────────────────────


def nanos(milliseconds: float) -> int:
    return round(milliseconds * 1_000_000)


def function_call(call: dict[str, Any]) -> dict[str, Any]:
    """A FUNCTION_CALL output; arguments that are not a JSON object are wrapped so they still are."""
    text = call.get("arguments") or ""
    try:
        arguments = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        arguments = {"raw_arguments": text}
    if not isinstance(arguments, dict):
        arguments = {"value": arguments}
    value = {"name": call.get("name") or "", "arguments": arguments, "id": call.get("id")}
    return {"type": "FUNCTION_CALL", "value": value}


def string(text: str) -> dict[str, Any]:
    return {"type": "STRING", "value": text}


def thinking(text: str) -> dict[str, Any]:
    return {"type": "THINKING", "value": string(text)}


def meta(
    record: RunRecord,
    asked: frozenset[str],
    release_tag: str,
    *,
    output: str,
    duration_ms: float,
    allowed: frozenset[str] | None = None,
) -> dict[str, Any]:
    """The `meta` fields the caller asked for (and this answer may carry)."""
    wanted = asked if allowed is None else asked & allowed
    out: dict[str, Any] = {}
    if "model_name" in wanted:
        out["model_name"] = record.model
    if "latency" in wanted:
        out["latency"] = nanos(duration_ms)
    if "deployment_release_tag" in wanted:
        out["deployment_release_tag"] = release_tag
    if "prompt_version_id" in wanted and record.version_id:
        out["prompt_version_id"] = as_uuid(record.version_id)
    if "finish_reason" in wanted:
        out["finish_reason"] = FINISH_REASONS.get(record.stop_reason or "", "UNKNOWN")
    if "usage" in wanted:
        out["usage"] = {
            "input_token_count": record.input_tokens,
            "output_token_count": record.output_tokens,
            "input_char_count": sum(len(str(m.get("content") or "")) for m in record.messages or []),
            "output_char_count": len(output),
            "compute_nanos": nanos(duration_ms),
            "cache_creation_input_tokens": record.cache_write_input_tokens,
            "cache_read_input_tokens": record.cached_input_tokens,
        }
    if "cost" in wanted:
        out["cost"] = {"value": record.cost, "unit": "USD"} if record.cost is not None else None
    return out


def rejection(message: str, code: str | None) -> dict[str, Any]:
    return {"code": "PROVIDER_ERROR", "message": message, "raw_data": {"promptdeck_code": code}}


# ── endpoints ───────────────────────────────────────────────────────────────

EXECUTE_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "inputs": {"type": "array", "items": {"type": "object"}},
                        "prompt_deployment_id": {"type": "string", "format": "uuid"},
                        "prompt_deployment_name": {"type": "string"},
                        "release_tag": {"type": "string"},
                        "external_id": {"type": "string"},
                        "expand_meta": {"type": "object", "additionalProperties": {"type": "boolean"}},
                        "raw_overrides": {"type": "object"},
                        "expand_raw": {"type": "array", "items": {"type": "string"}},
                        "metadata": {"type": "object"},
                    },
                }
            }
        },
    }
}
EXECUTE_PATHS = ("/v1/execute-prompt", "/v1/execute-prompt-stream")


async def _start(request: Request, stream: bool) -> tuple[Invocation, Execution, Callable[[], None]]:
    caller = await vellum_caller(request)
    parsed = parse_execution(await json_body(request), "prompt_deployment_id", "prompt_deployment_name")
    name = await deployment_name(request, caller, parsed)
    release = await reserve_external_id(request, caller, parsed.external_id)
    try:
        invocation = await services(request).engine.start(
            InvokeRequest(
                caller=caller,
                dialect="vellum",
                deployment=name,
                variant=parsed.release_tag,  # LATEST: the newest version (Deployment.resolve)
                inputs=parsed.inputs,
                stream=stream,
                metadata=parsed.metadata,
                external_id=parsed.external_id,
                messages=parsed.messages,
                raw_overrides=parsed.raw_overrides,
                keep_raw=bool(parsed.expand_raw),
            )
        )
    except BaseException:
        release()
        raise
    return invocation, parsed, release


@router.post(EXECUTE_PATHS[0], openapi_extra=EXECUTE_DOC, summary="Execute a prompt deployment")
async def execute_prompt(request: Request) -> Response:
    invocation, parsed, release = await _start(request, stream=False)
    try:
        record = await unless_disconnected(request, invocation.complete())
    finally:
        release()
    answer: dict[str, Any] = {"execution_id": execution_id(record)}
    asked, tag = parsed.expand_meta, parsed.release_tag
    if record.error_code:
        answer["state"] = "REJECTED"
        answer["error"] = rejection(record.error_message or "the provider failed", record.error_code)
    else:
        outputs = [thinking(record.reasoning)] if record.reasoning else []
        if record.output or not record.tool_calls:
            outputs.append(string(record.output))
        outputs += [function_call(call) for call in record.tool_calls or []]
        answer["state"] = "FULFILLED"
        answer["outputs"] = outputs
    if asked:
        answer["meta"] = meta(record, asked, tag, output=record.output, duration_ms=record.duration_ms)
    answer["raw"] = {key: invocation.raw[key] for key in parsed.expand_raw if key in invocation.raw}
    return Response(dumps(answer), media_type="application/json")


@router.post(
    EXECUTE_PATHS[1],
    openapi_extra=EXECUTE_DOC,
    response_class=StreamingResponse,  # documents no JSON answer
    responses={200: {"content": {NDJSON: {}}}},
    summary="Execute a prompt deployment, streamed as newline-delimited JSON",
)
async def execute_prompt_stream(request: Request) -> Response:
    invocation, parsed, release = await _start(request, stream=True)
    keepalive = services(request).settings.keepalive_seconds
    events = stream_events(invocation, parsed, keepalive, release)
    return StreamingResponse(events, media_type=NDJSON, headers=STREAM_HEADERS)


def _line(value: dict[str, Any]) -> bytes:
    return dumps(value) + b"\n"


async def stream_events(
    invocation: Invocation, parsed: Execution, keepalive: float, release: Callable[[], None]
) -> AsyncIterator[bytes]:
    """INITIATED, STREAMING deltas, then FULFILLED or REJECTED; an empty line while quiet."""
    record = invocation.record
    base = {"execution_id": execution_id(record)}
    asked, tag = parsed.expand_meta, parsed.release_tag
    order: list[str] = []  # output slots in order of first appearance: "text", "thinking", "tool:<n>"
    text: list[str] = []
    reasoning: list[str] = []
    tools: dict[int, dict[str, Any]] = {}

    def slot(key: str) -> int:
        if key not in order:
            order.append(key)
        return order.index(key)

    def outputs() -> list[tuple[int, dict[str, Any]]]:
        if "text" not in order and not tools:
            slot("text")
        found: list[tuple[int, dict[str, Any]]] = []
        for index, key in enumerate(order):
            if key == "text":
                found.append((index, string("".join(text))))
            elif key == "thinking":
                found.append((index, thinking("".join(reasoning))))
            else:
                found.append((index, function_call(tools[int(key[5:])])))
        return found

    def with_meta(event: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
        found = meta(
            record, asked, tag, output="".join(text), duration_ms=invocation.elapsed_ms(), allowed=allowed
        )
        return {**event, "meta": found} if found else event

    initiated = False
    try:
        async for event in with_keepalive(invocation.events(), keepalive):
            if event is None:
                yield KEEPALIVE
                continue
            if not initiated:
                initiated = True
                yield _line(with_meta({"state": "INITIATED", **base}, INITIATED_META))
            if isinstance(event, TextDelta | ReasoningDelta):
                is_text = isinstance(event, TextDelta)
                (text if is_text else reasoning).append(event.text)
                output = string(event.text) if is_text else thinking(event.text)
                index = slot("text" if is_text else "thinking")
                yield _line({"state": "STREAMING", **base, "output": output, "output_index": index})
            elif isinstance(event, ToolCallDelta):
                call = tools.setdefault(event.index, {"id": None, "name": None, "arguments": ""})
                call["id"] = event.id or call["id"]
                call["name"] = event.name or call["name"]
                call["arguments"] += event.arguments_delta
                slot(f"tool:{event.index}")
            elif isinstance(event, Finished):
                final = outputs()
                for index, output in final:
                    if output["type"] == "FUNCTION_CALL":  # whole: its arguments must be an object
                        yield _line({"state": "STREAMING", **base, "output": output, "output_index": index})
                done = {"state": "FULFILLED", **base, "outputs": [output for _, output in final]}
                yield _line(with_meta(done, FULFILLED_META))
            elif isinstance(event, Failed):
                failed = {"state": "REJECTED", **base, "error": rejection(event.message, event.code)}
                yield _line(with_meta(failed, REJECTED_META))
    finally:
        release()


# ── actuals ─────────────────────────────────────────────────────────────────


def json_body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its JSON body itself (FastAPI cannot see it)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


ACTUAL = {
    "id": {"type": "string", "description": "an earlier execution_id"},
    "external_id": {"type": "string"},
    "text": {"type": "string"},
    "quality": {"type": "number", "minimum": 0, "maximum": 1},
    "timestamp": {"type": "string", "format": "date-time"},
    "metadata": {"type": "object"},
}
ACTUALS_DOC = json_body_doc(
    {
        "type": "object",
        "required": ["actuals"],
        "properties": {
            "deployment_id": {"type": "string", "format": "uuid"},
            "deployment_name": {"type": "string"},
            "actuals": {"type": "array", "items": {"type": "object", "properties": ACTUAL}},
        },
    }
)


@router.post(
    "/v1/submit-completion-actuals",
    openapi_extra=ACTUALS_DOC,
    response_class=Response,  # documents the empty answer
    summary="Feedback on earlier executions (200, empty body)",
)
async def submit_completion_actuals(request: Request) -> Response:
    caller = await vellum_caller(request)
    body = json_object(await json_body(request))
    problems = Problems()
    deployment_id, deployment_name = body.get("deployment_id"), body.get("deployment_name")
    if deployment_id is not None and (not isinstance(deployment_id, str) or id_hex(deployment_id) is None):
        problems.add("deployment_id: expected a deployment id (a UUID)")
    if deployment_name is not None and (not isinstance(deployment_name, str) or not deployment_name):
        problems.add("deployment_name: expected a non-empty string")
    actuals = body.get("actuals")
    if not isinstance(actuals, list) or not actuals:
        problems.add("actuals: required, a non-empty array")
        actuals = []
    items = [_actual(item, f"actuals[{i}]", problems) for i, item in enumerate(actuals)]
    problems.raise_any()
    app = services(request)
    wanted_id = id_hex(deployment_id) if isinstance(deployment_id, str) else None
    for item in items:  # every run is found before anything is stored
        run = await _run_for_actual(app, caller, item)
        if (wanted_id and run["deployment_id"] != wanted_id) or (
            deployment_name and run["deployment"] != deployment_name
        ):
            raise NotFound(f"execution {item['ref']!r} is not one of this deployment's")
        item["run_id"] = run["id"]
    await app.feedback.add(caller.workspace_id, items)
    return Response(status_code=200)


def _actual(given: Any, where: str, problems: Problems) -> dict[str, Any]:
    if not isinstance(given, dict):
        problems.add(f"{where}: expected an object")
        return {}
    run_id, external_id = given.get("id"), given.get("external_id")
    item: dict[str, Any] = {}
    if (run_id is None) == (external_id is None):
        problems.add(f"{where}: give exactly one of id and external_id")
    elif not isinstance(run_id or external_id, str) or not (run_id or external_id):
        problems.add(f"{where}.{'id' if run_id is not None else 'external_id'}: expected a non-empty string")
    else:
        item["ref"] = run_id or external_id
        item["by_external_id"] = external_id is not None
    text, quality, metadata = given.get("text"), given.get("quality"), given.get("metadata")
    if text is not None and not isinstance(text, str):
        problems.add(f"{where}.text: expected a string")
    if quality is not None and (
        isinstance(quality, bool) or not isinstance(quality, int | float) or not 0 <= quality <= 1
    ):
        problems.add(f"{where}.quality: expected a number from 0 to 1")
    if metadata is not None and not isinstance(metadata, dict):
        problems.add(f"{where}.metadata: expected an object")
    item.update(text=text, quality=quality, metadata=metadata, timestamp=None)
    stamp = given.get("timestamp")
    if stamp is not None:
        try:
            when = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
        except ValueError:
            when = None
        if when is None:
            problems.add(f"{where}.timestamp: expected an ISO 8601 date and time")
        else:
            item["timestamp"] = when if when.tzinfo else when.replace(tzinfo=UTC)
    return item


async def _run_for_actual(app: Services, caller: Caller, item: dict[str, Any]) -> dict[str, Any]:
    ref: str = item["ref"]
    if item["by_external_id"]:
        pending = app.writer.pending_run_by_external_id(caller.workspace_id, ref)
        if pending is not None:
            return {
                "id": pending.id,
                "deployment": pending.deployment,
                "deployment_id": pending.deployment_id,
            }
        found = await app.feedback.run_with_external_id(caller.workspace_id, ref)
        if found is None:
            raise NotFound(f"no execution with external_id {ref!r}")
        return found
    try:
        return await app.find_run(caller.workspace_id, ref)
    except NotFound:
        raise NotFound(f"no execution with id {ref!r}") from None


# ── provider payload ────────────────────────────────────────────────────────


PAYLOAD_DOC = json_body_doc(
    {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            name: EXECUTE_DOC["requestBody"]["content"]["application/json"]["schema"]["properties"][name]
            for name in ("inputs", "release_tag", "expand_meta")
        }
        | {"deployment_id": {"type": "string", "format": "uuid"}, "deployment_name": {"type": "string"}},
    }
)


@router.post(
    "/v1/deployments/provider-payload",
    openapi_extra=PAYLOAD_DOC,
    summary="The request a deployment would send its provider",
)
async def provider_payload(request: Request) -> Response:
    caller = await vellum_caller(request)
    parsed = parse_execution(await json_body(request), "deployment_id", "deployment_name", payload=True)
    name = await deployment_name(request, caller, parsed)
    app = services(request)
    variant = parsed.release_tag
    invoke = InvokeRequest(
        caller=caller,
        dialect="vellum",
        deployment=name,
        variant=variant,
        inputs=parsed.inputs,
        messages=parsed.messages,
    )
    answer: dict[str, Any] = {"payload": await app.engine.payload(invoke)}
    if parsed.expand_meta:
        deployment: Deployment | None = await app.engine.deployments.get((caller.workspace_id, name))
        assert deployment is not None  # payload() found it
        _, version = deployment.resolve(variant)
        found: dict[str, Any] = {}
        if "model_name" in parsed.expand_meta:
            found["model_name"] = version.spec.model
        if "deployment_release_tag" in parsed.expand_meta:
            found["deployment_release_tag"] = parsed.release_tag
        if "prompt_version_id" in parsed.expand_meta:
            found["prompt_version_id"] = as_uuid(version.id)
        answer["meta"] = found
    return Response(dumps(answer), media_type="application/json")
