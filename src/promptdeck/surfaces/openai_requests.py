"""The OpenAI-shaped request bodies as models: Traceport's run (WIRE.md §3) and OpenAI's chat
completion (§4), which share `variables`, `stream`, `stream_options`, `user` and `metadata`.
A bad field is a 400 `invalid_request_error` whose `param` is the field's path in OpenAI's
style (`messages[0].content`, `tools[1].function.name`): the first problem's, while the message
names every one. Unknown fields are ignored, and null is the same as absent."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

from promptdeck.domain.prompts import PARAMETERS, REASONING_EFFORTS
from promptdeck.domain.run_sessions import check_metadata_session, take_session
from promptdeck.domain.schema_problems import (
    CHOICE,
    SILENT_TAG,
    FlatMetadata,
    Found,
    NonEmptyStr,
    Problem,
    at,
    by_type,
    fail,
)
from promptdeck.surfaces.http import body_doc
from promptdeck.surfaces.openai_parts import Part, media_types, neutral_content
from promptdeck.surfaces.openai_wire import WireError

STRICT = ConfigDict(strict=True, extra="ignore")
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def refuse(problems: list[Problem], body: Any) -> WireError:
    """Every problem in the message; the first one's field as `param`."""
    said = [str(problem) for problem in problems]
    return WireError("invalid request: " + "; ".join(said), param=problems[0].path or None, details=said)


# ── shared by both dialects ─────────────────────────────────────────────────


class StreamOptions(BaseModel):
    model_config = STRICT
    include_usage: bool | None = Field(None, description="send a last chunk with the usage")


class CommonBody(BaseModel):
    model_config = STRICT

    variables: dict[str, Any] | None = Field(None, description="the template's inputs")
    stream: bool | None = Field(None, description="answer `chat.completion.chunk` Server-Sent Events")
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, description="the end user, for the run log")
    metadata: FlatMetadata | None = Field(
        None, description="flat caller metadata; its `session_id` key is the run's session"
    )

    @model_validator(mode="after")
    def _session(self) -> CommonBody:
        check_metadata_session(type(self).__name__, self.metadata)
        return self


def common_fields(body: CommonBody) -> dict[str, Any]:
    """What both dialects take alike, as `InvokeRequest` fields (plus `include_usage`, and
    `session_id`: the metadata's, for `call_headers`)."""
    options = body.stream_options
    metadata, session_id = take_session(body.metadata)
    return {
        "inputs": body.variables or {},
        "stream": bool(body.stream),
        "include_usage": bool(options and options.include_usage),
        "end_user": body.user,
        "metadata": metadata,
        "session_id": session_id,
    }


# ── Traceport ───────────────────────────────────────────────────────────────


def _provider_model(value: str) -> str:
    if "/" not in value or value.startswith("/") or value.endswith("/"):
        raise fail("provider_model", f"expected 'provider/model'; got {value!r}")
    return value


class RunBody(CommonBody):
    """`POST /prompt/{slug}/run`."""

    model_config = ConfigDict(title="Traceport run")

    model: Annotated[str, AfterValidator(_provider_model)] | None = Field(
        None, description="provider/model, instead of the version's"
    )


RUN_BODY = TypeAdapter(RunBody)
RUN_DOC = body_doc(RUN_BODY)


def run_fields(body: RunBody) -> dict[str, Any]:
    return {"model": body.model or None, **common_fields(body)}


# ── OpenAI chat completions ─────────────────────────────────────────────────


def _deployment_ref(value: str) -> str:
    deployment, at_sign, variant = value.partition("@")
    if not deployment or (at_sign and not variant):
        raise fail("deployment_ref", f"expected 'deployment' or 'deployment@variant'; got {value!r}")
    return value


def _content_shape(value: Any) -> str | None:
    if value is None:
        return SILENT_TAG + "null"
    if isinstance(value, str):
        return SILENT_TAG + "text"
    return SILENT_TAG + "parts" if isinstance(value, list) else None


Content = Annotated[
    Annotated[None, Tag("~null")] | Annotated[str, Tag("~text")] | Annotated[list[Part], Tag("~parts")],
    Discriminator(
        _content_shape,
        custom_error_type=CHOICE,
        custom_error_message="expected a string or an array of content parts",
        custom_error_context={"field": None},
    ),
]


class CalledFunction(BaseModel):
    model_config = STRICT
    name: NonEmptyStr
    arguments: str = Field(description="the arguments, a string of JSON")


class ToolCall(BaseModel):
    model_config = STRICT
    id: NonEmptyStr
    type: Literal["function"] = "function"
    function: CalledFunction


class ChatMessage(BaseModel):
    model_config = STRICT

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Content = None
    tool_calls: list[ToolCall] | None = Field(None, description="an assistant's calls")
    tool_call_id: str | None = Field(None, description="in a tool message: the id of the call it answers")

    @model_validator(mode="after")
    def _by_role(self) -> ChatMessage:
        found: Found = []
        if self.content is None and self.role != "assistant":
            found.append((("content",), fail("required_in_role", f"required in a {self.role} message"), None))
        if self.role != "user" and (media := media_types(self.content)):
            message = f"{' and '.join(media)} parts are taken in user messages only; this one is {self.role}"
            found.append((("content",), fail("user_only", message), None))
        if self.role == "tool" and not self.tool_call_id:
            message = "required in a tool message: the id of the call it answers"
            found.append((("tool_call_id",), fail("required_in_role", message), self.tool_call_id))
        if found:
            raise at("ChatMessage", found)
        return self


def _tool_name(value: str) -> str:
    if not TOOL_NAME.match(value):
        raise fail("tool_name", f"expected 1-64 letters, digits, '_' or '-'; got {value!r}")
    return value


class FunctionTool(BaseModel):
    model_config = STRICT
    name: Annotated[
        str, AfterValidator(_tool_name), WithJsonSchema({"type": "string", "pattern": TOOL_NAME.pattern})
    ]
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="a JSON Schema object")


class Tool(BaseModel):
    model_config = STRICT
    type: Literal["function"]
    function: FunctionTool


class ChosenFunction(BaseModel):
    model_config = STRICT
    name: NonEmptyStr


class ToolChoiceFunction(BaseModel):
    model_config = STRICT
    type: Literal["function"]
    function: ChosenFunction


def _tool_choice_shape(value: Any) -> str | None:
    if value is None:
        return SILENT_TAG + "null"
    if isinstance(value, str):
        return SILENT_TAG + "mode"
    return SILENT_TAG + "function" if isinstance(value, dict) else None


ToolChoice = Annotated[
    Annotated[None, Tag("~null")]
    | Annotated[Literal["auto", "none", "required"], Tag("~mode")]
    | Annotated[ToolChoiceFunction, Tag("~function")],
    Discriminator(
        _tool_choice_shape,
        custom_error_type=CHOICE,
        custom_error_message="expected 'auto', 'none', 'required' or {type: 'function', function: {name}}",
        custom_error_context={"field": None},
    ),
]


class JsonSchemaSpec(BaseModel):
    model_config = STRICT
    name: str | None = None
    schema_: dict[str, Any] = Field(alias="schema", description="the JSON Schema the answer follows")
    strict: bool | None = None


class TextFormat(BaseModel):
    model_config = STRICT
    type: Literal["text"]


class JsonObjectFormat(BaseModel):
    model_config = STRICT
    type: Literal["json_object"]


class JsonSchemaFormat(BaseModel):
    model_config = STRICT
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


def _format_shape(value: Any) -> str | None:
    return SILENT_TAG + "null" if value is None else by_type(value)


ResponseFormat = Annotated[
    Annotated[None, Tag("~null")]
    | Annotated[TextFormat, Tag("=text")]
    | Annotated[JsonObjectFormat, Tag("=json_object")]
    | Annotated[JsonSchemaFormat, Tag("=json_schema")],
    Discriminator(
        _format_shape,
        custom_error_type=CHOICE,
        custom_error_message="expected 'text', 'json_object' or 'json_schema'",
        custom_error_context={"field": "type"},
    ),
]


def _stop_shape(value: Any) -> str | None:
    if value is None:
        return SILENT_TAG + "null"
    if isinstance(value, str):
        return SILENT_TAG + "one"
    return SILENT_TAG + "list" if isinstance(value, list) else None


Stop = Annotated[
    Annotated[None, Tag("~null")] | Annotated[str, Tag("~one")] | Annotated[list[str], Tag("~list")],
    Discriminator(
        _stop_shape,
        custom_error_type=CHOICE,
        custom_error_message="expected a string or an array of strings",
        custom_error_context={"field": None},
    ),
]


def _bounds(name: str) -> Any:
    """The bounds of one of the version parameters (domain/prompts.py's PARAMETERS)."""
    _, low, high = PARAMETERS[name]
    return Field(None, ge=low, le=high)


def _one_choice(n: int) -> int:
    if n != 1:
        raise fail("one_choice", f"only one choice is generated per call; got {n}")
    return n


def _effort(value: str) -> str:
    if value not in REASONING_EFFORTS:
        raise fail("reasoning_effort", f"expected one of {', '.join(REASONING_EFFORTS)}; got {value!r}")
    return value


Effort = Annotated[
    str, AfterValidator(_effort), WithJsonSchema({"type": "string", "enum": list(REASONING_EFFORTS)})
]


class ChatBody(CommonBody):
    """`POST /v1/chat/completions`: a deployment as the model; the request's messages follow
    the version's own, its sampling fields, tools, tool_choice and response_format override
    the version's for this call."""

    model_config = ConfigDict(title="OpenAI chat completion")

    model: Annotated[str, AfterValidator(_deployment_ref)] = Field(
        description="a deployment name, or 'deployment@variant'"
    )
    messages: list[ChatMessage] = Field(description="appended after the version's messages (may be empty)")
    n: Annotated[int, AfterValidator(_one_choice)] | None = None
    temperature: float | None = _bounds("temperature")
    top_p: float | None = _bounds("top_p")
    max_tokens: int | None = _bounds("max_tokens")
    max_completion_tokens: int | None = _bounds("max_tokens")
    stop: Stop = None
    seed: int | None = None
    presence_penalty: float | None = _bounds("presence_penalty")
    frequency_penalty: float | None = _bounds("frequency_penalty")
    reasoning_effort: Effort | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice = None
    response_format: ResponseFormat = None

    @model_validator(mode="after")
    def _one_token_limit(self) -> ChatBody:
        newer, older = self.max_completion_tokens, self.max_tokens
        if newer is not None and older is not None and newer != older:
            problem = fail("conflict", f"differs from max_tokens ({older}); send one of them")
            raise at("ChatBody", [(("max_completion_tokens",), problem, newer)])
        return self


CHAT_BODY = TypeAdapter(ChatBody)
CHAT_DOC = body_doc(CHAT_BODY)
PARAMS = ("temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty")


def chat_fields(body: ChatBody) -> dict[str, Any]:
    """The body as `InvokeRequest` fields (plus `include_usage`), in the neutral shapes of
    `providers/base.py`."""
    deployment, _, variant = body.model.partition("@")
    params: dict[str, Any] = {name: value for name in PARAMS if (value := getattr(body, name)) is not None}
    if body.reasoning_effort is not None:
        params["reasoning_effort"] = body.reasoning_effort
    if body.max_completion_tokens is not None:
        params["max_tokens"] = body.max_completion_tokens
    return {
        "deployment": deployment,
        "variant": variant or None,
        "messages": [neutral_message(message) for message in body.messages],
        "params": params or None,
        "tools": [neutral_tool(tool.function) for tool in body.tools] if body.tools is not None else None,
        "tool_choice": neutral_tool_choice(body.tool_choice),
        "response_format": neutral_format(body.response_format),
        **common_fields(body),
    }


def neutral_message(message: ChatMessage) -> dict[str, Any]:
    """`developer` is `system`, text parts are joined (or with images or files, kept as parts),
    an assistant's `tool_calls` lose their `function` wrapper, a `tool` message keeps its
    `tool_call_id`."""
    role = "system" if message.role == "developer" else message.role
    neutral: dict[str, Any] = {"role": role, "content": neutral_content(message.content)}
    if role == "assistant" and message.tool_calls is not None:
        neutral["tool_calls"] = [
            {"id": call.id, "name": call.function.name, "arguments": call.function.arguments}
            for call in message.tool_calls
        ]
    if role == "tool":
        neutral["tool_call_id"] = message.tool_call_id
    return neutral


def neutral_tool(function: FunctionTool) -> dict[str, Any]:
    return {
        "name": function.name,
        "description": function.description or "",
        "parameters": function.parameters or {"type": "object", "properties": {}},
    }


def neutral_tool_choice(choice: str | ToolChoiceFunction | None) -> str | dict[str, Any] | None:
    if isinstance(choice, ToolChoiceFunction):
        return {"name": choice.function.name}
    return choice


def neutral_format(
    given: TextFormat | JsonObjectFormat | JsonSchemaFormat | None,
) -> dict[str, Any] | None:
    if not isinstance(given, JsonSchemaFormat):
        return None if given is None else {"type": given.type}
    spec = given.json_schema
    neutral: dict[str, Any] = {"type": "json_schema", "name": spec.name or "response", "schema": spec.schema_}
    if spec.strict is not None:
        neutral["strict"] = spec.strict
    return neutral
