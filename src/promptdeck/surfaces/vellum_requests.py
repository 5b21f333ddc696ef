"""The Vellum request bodies (WIRE.md §2) as models: execute-prompt (and its stream), the
provider payload and completion actuals, and what the handlers take from them. Every problem
is reported at once in one 400 `detail` that names each field by its path; a problem inside an
input also names the input (`inputs[1].value (input 'text'): expected a string; got 3`).
Unknown fields are ignored, and null is the same as absent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.run_sessions import check_metadata_session, take_session
from promptdeck.domain.schema_problems import (
    CHOICE,
    SILENT_TAG,
    Found,
    NonEmptyStr,
    Problem,
    at,
    by_type,
    exactly_one,
    fail,
    path_of,
    with_more,
)
from promptdeck.surfaces.http import body_doc
from promptdeck.surfaces.vellum_media import (
    DocumentContent,
    DocumentInput,
    ImageContent,
    ImageInput,
    MediaContent,
    RefusedContent,
    RefusedInput,
)

LATEST = "LATEST"
ROLES = {"SYSTEM": "system", "USER": "user", "ASSISTANT": "assistant", "FUNCTION": "tool"}
META_FIELDS = (
    "model_name",
    "usage",
    "cost",
    "finish_reason",
    "latency",
    "deployment_release_tag",
    "prompt_version_id",
)
STRICT = ConfigDict(strict=True, extra="ignore")
# A deployment id, with or without dashes (the JSON string is parsed, so not strictly a UUID).
DeploymentId = Annotated[UUID, Strict(False)]


def refuse(problems: list[Problem], body: Any) -> ValidationFailed:
    said = [named(problem, body) for problem in problems]
    return ValidationFailed("invalid request: " + "; ".join(said), details=said)


def named(problem: Problem, body: Any) -> str:
    """The problem, with the name of the input it is in when the body gives one."""
    loc = problem.loc
    if len(loc) < 2 or loc[0] != "inputs" or not isinstance(loc[1], int):
        return str(problem)
    try:
        item = body["inputs"][loc[1]]
    except (KeyError, IndexError, TypeError):
        return str(problem)
    name = item.get("name") if isinstance(item, dict) else None
    if not isinstance(name, str) or not name:
        return str(problem)
    said = f"{problem.message} (type {problem.shape})" if problem.shape else problem.message
    return f"{path_of(loc)} (input {name!r}): {said}"


# ── chat messages ───────────────────────────────────────────────────────────


class FunctionCallValue(BaseModel):
    model_config = STRICT
    name: str
    arguments: dict[str, Any]
    id: str | None = None


class StringContent(BaseModel):
    model_config = STRICT
    type: Literal["STRING"]
    value: str


class FunctionCallContent(BaseModel):
    model_config = STRICT
    type: Literal["FUNCTION_CALL"]
    value: FunctionCallValue


ItemContent = Annotated[
    Annotated[StringContent, Tag("=STRING")]
    | Annotated[FunctionCallContent, Tag("=FUNCTION_CALL")]
    | Annotated[ImageContent, Tag("=IMAGE")]
    | Annotated[DocumentContent, Tag("=DOCUMENT")]
    | Annotated[RefusedContent, Tag("=AUDIO")]
    | Annotated[RefusedContent, Tag("=VIDEO")],
    Discriminator(
        by_type,
        custom_error_type=CHOICE,
        custom_error_message="expected STRING, FUNCTION_CALL, IMAGE or DOCUMENT content",
        custom_error_context={"field": "type"},
    ),
]


class ArrayContent(BaseModel):
    model_config = STRICT
    type: Literal["ARRAY"]
    value: list[ItemContent]


def _content_shape(value: Any) -> str | None:
    return SILENT_TAG + "null" if value is None else by_type(value)


Content = Annotated[
    Annotated[None, Tag("~null")]
    | Annotated[StringContent, Tag("=STRING")]
    | Annotated[FunctionCallContent, Tag("=FUNCTION_CALL")]
    | Annotated[ArrayContent, Tag("=ARRAY")]
    | Annotated[ImageContent, Tag("=IMAGE")]
    | Annotated[DocumentContent, Tag("=DOCUMENT")]
    | Annotated[RefusedContent, Tag("=AUDIO")]
    | Annotated[RefusedContent, Tag("=VIDEO")],
    Discriminator(
        _content_shape,
        custom_error_type=CHOICE,
        custom_error_message="expected STRING, FUNCTION_CALL, IMAGE, DOCUMENT or ARRAY content",
        custom_error_context={"field": "type"},
    ),
]


class ChatMessage(BaseModel):
    """A Vellum chat message: `text`, or `content` (which wins when both are given). IMAGE and
    DOCUMENT content is taken in USER messages (what every provider takes)."""

    model_config = STRICT
    role: Literal["SYSTEM", "USER", "ASSISTANT", "FUNCTION"]
    text: str | None = None
    content: Content = None
    source: str | None = Field(None, description="in a FUNCTION message: the id of the call it answers")

    @model_validator(mode="after")
    def _by_role(self) -> ChatMessage:
        found: Found = []
        if self.role != "ASSISTANT" and self._calls():
            message = f"only ASSISTANT messages may carry FUNCTION_CALL content; this one is {self.role}"
            found.append((("content",), fail("assistant_only", message), None))
        if self.role != "USER" and (media := self._media()):
            kinds = " and ".join(sorted({item.type for item in media}))
            message = f"only USER messages may carry {kinds} content; this one is {self.role}"
            found.append((("content",), fail("user_only", message), None))
        if self.role == "FUNCTION" and not self.source:
            message = "required in a FUNCTION message: the id of the function call it answers"
            found.append((("source",), fail("required_in_role", message), self.source))
        if found:
            raise at("ChatMessage", found)
        return self

    def _items(self) -> list[StringContent | FunctionCallContent | MediaContent | RefusedContent]:
        content = self.content
        if content is None:
            return []
        return list(content.value) if isinstance(content, ArrayContent) else [content]

    def _calls(self) -> list[FunctionCallValue]:
        return [item.value for item in self._items() if isinstance(item, FunctionCallContent)]

    def _media(self) -> list[MediaContent]:
        return [item for item in self._items() if isinstance(item, ImageContent | DocumentContent)]

    def _content(self) -> str | list[dict[str, Any]]:
        """Its text, or with images or documents, its parts in order (STRING items as text)."""
        if self.content is None:
            return self.text or ""
        items = self._items()
        if not self._media():
            return "".join(item.value for item in items if isinstance(item, StringContent))
        return [
            {"type": "text", "text": item.value} if isinstance(item, StringContent) else item.value.part()
            for item in items
            if isinstance(item, StringContent | ImageContent | DocumentContent)
        ]

    def neutral(self) -> dict[str, Any]:
        """As a neutral message (providers/base.py)."""
        message: dict[str, Any] = {"role": ROLES[self.role], "content": self._content()}
        calls = self._calls()
        if calls:
            message["tool_calls"] = [
                {
                    "id": call.id or f"call_{position}",
                    "name": call.name,
                    "arguments": orjson.dumps(call.arguments).decode(),
                }
                for position, call in enumerate(calls)
            ]
        if self.role == "FUNCTION":
            message["tool_call_id"] = self.source
        return message


# ── inputs ──────────────────────────────────────────────────────────────────


class StringInput(BaseModel):
    model_config = STRICT
    name: NonEmptyStr
    type: Literal["STRING"]
    value: str


class JsonInput(BaseModel):
    model_config = STRICT
    name: NonEmptyStr
    type: Literal["JSON"]
    value: Any = None


class ChatHistoryInput(BaseModel):
    """Chat messages appended, in order, after the version's own; not a template variable."""

    model_config = STRICT
    name: NonEmptyStr
    type: Literal["CHAT_HISTORY"]
    value: list[ChatMessage]


Input = Annotated[
    Annotated[StringInput, Tag("=STRING")]
    | Annotated[JsonInput, Tag("=JSON")]
    | Annotated[ChatHistoryInput, Tag("=CHAT_HISTORY")]
    | Annotated[ImageInput, Tag("=IMAGE")]
    | Annotated[DocumentInput, Tag("=DOCUMENT")]
    | Annotated[RefusedInput, Tag("=AUDIO")]
    | Annotated[RefusedInput, Tag("=VIDEO")],
    Discriminator(
        by_type,
        custom_error_type=CHOICE,
        custom_error_message=(
            "expected an input {name, type, value} of type STRING, JSON, CHAT_HISTORY, IMAGE or DOCUMENT"
        ),
        custom_error_context={"field": "type"},
    ),
]


def _once_each(inputs: list[Any]) -> list[Any]:
    seen: dict[str, int] = {}
    for position, given in enumerate(inputs):
        if given.name in seen:
            where = f"inputs[{seen[given.name]}] and inputs[{position}]"
            raise fail("duplicate", f"input {given.name!r} is given twice ({where})")
        seen[given.name] = position
    return inputs


Inputs = Annotated[list[Input], AfterValidator(_once_each)]


def _http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise fail("http_url", f"expected an http(s) URL; got {url!r}")
    return url


class RawOverrides(BaseModel):
    model_config = STRICT
    body: dict[str, Any] | None = Field(None, description="merged into the provider's request body")
    headers: dict[str, str | None] | None = Field(None, description="extra headers (null: none)")
    url: Annotated[str, AfterValidator(_http_url)] | None = None


# ── execute-prompt and provider payload ─────────────────────────────────────


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
    session_id: str | None = None  # `metadata.session_id`, taken out of the metadata


class DeploymentBody(BaseModel):
    """What both bodies share: a deployment by id or by name (exactly one), a release tag, the
    inputs and which `meta` fields to return."""

    model_config = STRICT
    by_id: ClassVar[str]
    by_name: ClassVar[str]

    release_tag: NonEmptyStr | None = Field(
        None, description="a variant; absent or LATEST: the default variant"
    )
    inputs: Inputs = Field(description="[{name, type, value}] (may be empty)")
    expand_meta: dict[str, bool | None] | None = Field(None, description="the `meta` fields to return")

    @model_validator(mode="wrap")
    @classmethod
    def _one_deployment(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        found = exactly_one(data, cls.by_id, cls.by_name)
        if not found:
            return handler(data)
        try:
            handler(data)
        except ValidationError as exc:
            raise with_more(cls.__name__, exc, found) from None
        raise at(cls.__name__, found)

    def execution(self, deployment_id: UUID | None, deployment_name: str | None) -> Execution:
        values: dict[str, Any] = {}
        messages: list[dict[str, Any]] = []
        for given in self.inputs:
            if isinstance(given, ChatHistoryInput):
                messages += [message.neutral() for message in given.value]
            elif isinstance(given, StringInput | JsonInput):
                values[given.name] = given.value
            elif isinstance(given, ImageInput | DocumentInput):
                values[given.name] = given.value.src  # binds the version's image or document input
        asked = self.expand_meta or {}
        return Execution(
            deployment_name,
            deployment_id.hex if deployment_id is not None else None,
            self.release_tag or LATEST,
            values,
            messages or None,
            frozenset(name for name in META_FIELDS if asked.get(name) is True),
        )


class ExecuteBody(DeploymentBody):
    """`POST /v1/execute-prompt` and `/v1/execute-prompt-stream`."""

    model_config = ConfigDict(title="Vellum execute prompt")
    by_id: ClassVar[str] = "prompt_deployment_id"
    by_name: ClassVar[str] = "prompt_deployment_name"

    prompt_deployment_id: DeploymentId | None = None
    prompt_deployment_name: NonEmptyStr | None = None
    external_id: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        None, description="your own id for the execution, unique in the workspace"
    )
    raw_overrides: RawOverrides | None = None
    expand_raw: list[str] | None = Field(None, description="keys of the provider's answer to return in `raw`")
    metadata: dict[str, Any] | None = Field(None, description="its `session_id` key is the run's session")

    @model_validator(mode="after")
    def _session(self) -> ExecuteBody:
        check_metadata_session("ExecuteBody", self.metadata)
        return self


class PayloadBody(DeploymentBody):
    """`POST /v1/deployments/provider-payload`."""

    model_config = ConfigDict(title="Vellum provider payload")
    by_id: ClassVar[str] = "deployment_id"
    by_name: ClassVar[str] = "deployment_name"

    deployment_id: DeploymentId | None = None
    deployment_name: NonEmptyStr | None = None


EXECUTE_BODY = TypeAdapter(ExecuteBody)
EXECUTE_DOC = body_doc(EXECUTE_BODY)
PAYLOAD_BODY = TypeAdapter(PayloadBody)
PAYLOAD_DOC = body_doc(PAYLOAD_BODY)


def execution(body: ExecuteBody) -> Execution:
    plain = body.execution(body.prompt_deployment_id, body.prompt_deployment_name)
    metadata, session_id = take_session(body.metadata)
    return Execution(
        plain.deployment_name,
        plain.deployment_id,
        plain.release_tag,
        plain.inputs,
        plain.messages,
        plain.expand_meta,
        body.external_id,
        raw_overrides(body.raw_overrides),
        metadata,
        tuple(body.expand_raw or ()),
        session_id,
    )


def payload_execution(body: PayloadBody) -> Execution:
    return body.execution(body.deployment_id, body.deployment_name)


def raw_overrides(given: RawOverrides | None) -> dict[str, Any] | None:
    if given is None:
        return None
    overrides: dict[str, Any] = {}
    if given.body:
        overrides["body"] = given.body
    if given.headers:
        overrides["headers"] = {name: value for name, value in given.headers.items() if value is not None}
    if given.url is not None:
        overrides["url"] = given.url
    return overrides or None


# ── actuals ─────────────────────────────────────────────────────────────────


class Actual(BaseModel):
    """Feedback on one earlier execution, named by `id` (its execution_id) or `external_id`."""

    model_config = STRICT
    id: NonEmptyStr | None = Field(None, description="an earlier execution_id")
    external_id: NonEmptyStr | None = None
    text: str | None = None
    quality: Annotated[float, Field(ge=0, le=1)] | None = None
    timestamp: Annotated[datetime, Strict(False)] | None = Field(None, description="ISO 8601")
    metadata: dict[str, Any] | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _one_reference(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        found = exactly_one(data, "id", "external_id")
        if not found:
            return handler(data)
        try:
            handler(data)
        except ValidationError as exc:
            raise with_more("Actual", exc, found) from None
        raise at("Actual", found)


class ActualsBody(BaseModel):
    """`POST /v1/submit-completion-actuals`."""

    model_config = ConfigDict(strict=True, extra="ignore", title="Vellum completion actuals")
    deployment_id: DeploymentId | None = None
    deployment_name: NonEmptyStr | None = None
    actuals: Annotated[list[Actual], Field(min_length=1)]


ACTUALS_BODY = TypeAdapter(ActualsBody)
ACTUALS_DOC = body_doc(ACTUALS_BODY)


def actual_items(body: ActualsBody) -> list[dict[str, Any]]:
    """Each actual as the feedback store takes it (`run_id` is added once its run is found)."""
    items = []
    for given in body.actuals:
        when = given.timestamp
        items.append(
            {
                "ref": given.id or given.external_id,
                "by_external_id": given.external_id is not None,
                "text": given.text,
                "quality": given.quality,
                "metadata": given.metadata,
                "timestamp": when if when is None or when.tzinfo else when.replace(tzinfo=UTC),
            }
        )
    return items
