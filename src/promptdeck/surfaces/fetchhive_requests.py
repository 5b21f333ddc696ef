"""The Fetch Hive invoke body (WIRE.md §1) as a model, and its problems as Fetch Hive's 422."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.run_sessions import check_metadata_session, take_session
from promptdeck.domain.schema_problems import FlatMetadata, NonEmptyStr, Problem
from promptdeck.surfaces.http import body_doc


class InvokeBody(BaseModel):
    """`POST /v1/prompt/invoke` and `/v1/invoke`. Unknown fields are ignored; null is absent."""

    model_config = ConfigDict(strict=True, extra="ignore", title="Fetch Hive invoke")

    deployment: NonEmptyStr = Field(description="the deployment to run")
    variant: str | None = Field(None, description="a variant of it; empty or absent: its default")
    inputs: dict[str, Any] | None = Field(None, description="the template's inputs")
    streaming: bool | None = Field(None, description="answer Server-Sent Events")
    user: str | None = Field(None, description="the end user, for the run log")
    metadata: FlatMetadata | None = Field(
        None, description="flat caller metadata; its `session_id` key is the run's session"
    )

    @model_validator(mode="after")
    def _session(self) -> InvokeBody:
        check_metadata_session("InvokeBody", self.metadata)
        return self


INVOKE_BODY = TypeAdapter(InvokeBody)
INVOKE_DOC = body_doc(INVOKE_BODY)


def refuse(problems: list[Problem], body: Any) -> ValidationFailed:
    said = [str(problem) for problem in problems]
    return ValidationFailed("invalid request: " + "; ".join(said), details=said)


def invoke_fields(body: InvokeBody) -> dict[str, Any]:
    """The body as `InvokeRequest` fields (`session_id`: the metadata's, for `call_headers`)."""
    metadata, session_id = take_session(body.metadata)
    return {
        "deployment": body.deployment,
        "variant": body.variant or None,
        "inputs": body.inputs or {},
        "stream": bool(body.streaming),
        "end_user": body.user,
        "metadata": metadata,
        "session_id": session_id,
    }
