"""The OpenAI chat-completions dialect (WIRE.md §4): `POST /v1/chat/completions` with a
deployment as the model (`name` or `name@variant`), and `GET /v1/models`.

The request's `messages` are appended after the version's own, its `variables` fill the
template, and its sampling fields, `tools`, `tool_choice` and `response_format` override the
version's for this one call. Every OpenAI shape is mapped to the neutral shapes of
`providers/base.py` here, and checked before the engine starts: a bad field is a 400
`invalid_request_error` naming it in `param`, and no provider is called.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, Response

from promptdeck.domain.deployments import Deployment
from promptdeck.domain.prompts import param_problems
from promptdeck.engine.invoke import InvokeRequest
from promptdeck.surfaces.callers import bearer_caller, services
from promptdeck.surfaces.error_shapes import ERRORS, INVOKE_ERRORS
from promptdeck.surfaces.http import dialect_route, dumps, json_body, json_object
from promptdeck.surfaces.openai_wire import Problems, answer, common_fields, json_type, render_error, typed

router = APIRouter(route_class=dialect_route(render_error), tags=["OpenAI"], responses=ERRORS["openai"])

INVOKE_PATHS = ("/v1/chat/completions",)
ROLES = ("system", "developer", "user", "assistant", "tool")
# OpenAI's sampling fields that override the version's parameters, under the same names.
PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "reasoning_effort",
)
TOOL_CHOICES = ("auto", "none", "required")
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def parse_request(body: Any) -> dict[str, Any]:
    """The body as `InvokeRequest` fields (plus `include_usage`), reporting every problem."""
    body = json_object(body)
    problems = Problems()
    deployment, variant = parse_model(body.get("model"), problems)
    fields = common_fields(body, problems)
    n = typed(body, "n", int, "an integer", problems)
    if n is not None and n != 1:
        problems.add("n", f"only one choice is generated per call; got {n}")
    parsed = {
        "deployment": deployment,
        "variant": variant,
        "messages": parse_messages(body.get("messages"), problems),
        "params": parse_params(body, problems),
        "tools": parse_tools(body.get("tools"), problems),
        "tool_choice": parse_tool_choice(body.get("tool_choice"), problems),
        "response_format": parse_response_format(body.get("response_format"), problems),
        **fields,
    }
    problems.check()
    return parsed


def parse_model(value: Any, problems: Problems) -> tuple[str, str | None]:
    if value is None:
        problems.add("model", "required: a deployment name, or 'deployment@variant'")
        return "", None
    if not isinstance(value, str):
        problems.add("model", f"expected a string naming a deployment; got {json_type(value)}")
        return "", None
    deployment, at, variant = value.partition("@")
    if not deployment or (at and not variant):
        problems.add("model", f"expected 'deployment' or 'deployment@variant'; got {value!r}")
    return deployment, variant or None


def parse_messages(value: Any, problems: Problems) -> list[dict[str, Any]]:
    """OpenAI messages as neutral ones: `developer` is `system`, text parts are joined, an
    assistant's `tool_calls` lose their `function` wrapper, a `tool` message keeps its
    `tool_call_id`."""
    if value is None:
        problems.add("messages", "required: an array of messages (it may be empty)")
        return []
    if not isinstance(value, list):
        problems.add("messages", f"expected an array of messages; got {json_type(value)}")
        return []
    messages = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            problems.add(where, f"expected a message object; got {json_type(message)}")
            continue
        role = message.get("role")
        if role not in ROLES:
            problems.add(f"{where}.role", f"expected one of {', '.join(ROLES)}; got {role!r}")
            continue
        content = message_text(message.get("content"), f"{where}.content", role == "assistant", problems)
        neutral: dict[str, Any] = {"role": "system" if role == "developer" else role, "content": content}
        if role == "assistant" and message.get("tool_calls") is not None:
            neutral["tool_calls"] = parse_tool_calls(message["tool_calls"], f"{where}.tool_calls", problems)
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                problems.add(
                    f"{where}.tool_call_id", "required in a tool message: the id of the call it answers"
                )
            neutral["tool_call_id"] = call_id
        messages.append(neutral)
    return messages


def message_text(value: Any, where: str, optional: bool, problems: Problems) -> str:
    """A message's content: a string, or an array of text parts joined."""
    if value is None:
        if not optional:
            problems.add(where, "required")
        return ""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        problems.add(where, f"expected a string or an array of text parts; got {json_type(value)}")
        return ""
    texts = []
    for j, part in enumerate(value):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            kind = part.get("type") if isinstance(part, dict) else json_type(part)
            problems.add(
                f"{where}[{j}]", f"only text parts {{type: 'text', text}} are supported; got {kind!r}"
            )
            continue
        texts.append(part["text"])
    return "".join(texts)


def parse_tool_calls(value: Any, where: str, problems: Problems) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        problems.add(where, f"expected an array of tool calls; got {json_type(value)}")
        return []
    calls = []
    for i, call in enumerate(value):
        at = f"{where}[{i}]"
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(call, dict)
            or call.get("type", "function") != "function"
            or not isinstance(function, dict)
        ):
            problems.add(at, "expected {id, type: 'function', function: {name, arguments}}")
            continue
        if not isinstance(call.get("id"), str) or not call["id"]:
            problems.add(f"{at}.id", "required, a non-empty string")
        if not isinstance(function.get("name"), str) or not function["name"]:
            problems.add(f"{at}.function.name", "required, a non-empty string")
        if not isinstance(function.get("arguments"), str):
            problems.add(f"{at}.function.arguments", "required, a string of JSON")
        calls.append(
            {"id": call.get("id"), "name": function.get("name"), "arguments": function.get("arguments")}
        )
    return calls


def parse_params(body: dict[str, Any], problems: Problems) -> dict[str, Any] | None:
    """The sampling overrides, checked by the same rules as a version's parameters."""
    params = {name: body[name] for name in PARAMS if body.get(name) is not None}
    newer = body.get("max_completion_tokens")
    if newer is not None:
        if params.get("max_tokens", newer) != newer:
            problems.add("max_completion_tokens", "differs from max_tokens; send one of them")
        params["max_tokens"] = newer
    for problem in param_problems(params):
        name, _, message = problem.removeprefix("params.").partition(": ")
        if name == "max_tokens" and newer is not None and "max_tokens" not in body:
            name = "max_completion_tokens"
        problems.add(name, message)
    return params or None


def parse_tools(value: Any, problems: Problems) -> list[dict[str, Any]] | None:
    """OpenAI function tools as neutral `{name, description, parameters}`."""
    if value is None:
        return None
    if not isinstance(value, list):
        problems.add("tools", f"expected an array of function tools; got {json_type(value)}")
        return None
    tools = []
    for i, tool in enumerate(value):
        at = f"tools[{i}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            problems.add(at, "expected {type: 'function', function: {name, description?, parameters?}}")
            continue
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            problems.add(f"{at}.function.name", "expected 1-64 letters, digits, '_' or '-'")
            continue
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            problems.add(f"{at}.function.description", f"expected a string; got {json_type(description)}")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            problems.add(
                f"{at}.function.parameters", f"expected a JSON Schema object; got {json_type(parameters)}"
            )
            continue
        tools.append(
            {
                "name": name,
                "description": description or "",
                "parameters": parameters or {"type": "object", "properties": {}},
            }
        )
    return tools


def parse_tool_choice(value: Any, problems: Problems) -> str | dict[str, Any] | None:
    if value is None:
        return None
    if value in TOOL_CHOICES:
        return str(value)
    if isinstance(value, dict) and value.get("type") == "function":
        function = value.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str) and function["name"]:
            return {"name": function["name"]}
    problems.add("tool_choice", "expected 'auto', 'none', 'required' or {type: 'function', function: {name}}")
    return None


def parse_response_format(value: Any, problems: Problems) -> dict[str, Any] | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            problems.add("response_format.json_schema", "expected {name, schema: {...}, strict?}")
            return None
        neutral: dict[str, Any] = {
            "type": kind,
            "name": str(spec.get("name") or "response"),
            "schema": spec["schema"],
        }
        if isinstance(spec.get("strict"), bool):
            neutral["strict"] = spec["strict"]
        return neutral
    problems.add("response_format.type", f"expected 'text', 'json_object' or 'json_schema'; got {kind!r}")
    return None


COMPLETIONS_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model", "messages"],
                    "properties": {
                        "model": {"type": "string", "description": "deployment or deployment@variant"},
                        "messages": {"type": "array", "items": {"type": "object"}},
                        "variables": {"type": "object", "description": "the template's inputs"},
                        "stream": {"type": "boolean"},
                        "stream_options": {"type": "object"},
                        **{name: {} for name in PARAMS},
                        "max_completion_tokens": {"type": "integer"},
                        "tools": {"type": "array", "items": {"type": "object"}},
                        "tool_choice": {},
                        "response_format": {"type": "object"},
                        "user": {"type": "string"},
                        "metadata": {"type": "object"},
                    },
                }
            }
        },
    }
}


@router.post(
    INVOKE_PATHS[0],
    openapi_extra=COMPLETIONS_DOC,
    responses={**INVOKE_ERRORS["openai"], 200: {"content": {"text/event-stream": {}}}},  # stream: true
    summary="Chat completion from a deployment",
)
async def chat_completions(request: Request) -> Response:
    caller = await bearer_caller(request, "invoke")
    parsed = parse_request(await json_body(request))
    include_usage = parsed.pop("include_usage")
    invoke = InvokeRequest(caller=caller, dialect="openai", **parsed)
    return await answer(request, invoke, include_usage=include_usage, deployment_param="model")


@router.get("/v1/models", summary="The workspace's deployments, as OpenAI models")
async def list_models(request: Request) -> Response:
    caller = await bearer_caller(request, "invoke")
    deployments = await services(request).catalog.list_deployments(caller.workspace_id)
    data = [
        {"id": d.name, "object": "model", "created": created(d), "owned_by": "promptdeck"}
        for d in deployments
    ]
    return Response(dumps({"object": "list", "data": data}), media_type="application/json")


def created(deployment: Deployment) -> int:
    """A deployment keeps no creation time: its oldest served version's stands in for it."""
    times = [version.created_at.timestamp() for version in deployment.variants.values()]
    return int(min(times)) if times else 0
