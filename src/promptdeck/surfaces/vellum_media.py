"""Vellum's media values (`{src, metadata?}`) as promptdeck's: IMAGE and DOCUMENT inputs bind a
version's `image` and `document` inputs, IMAGE and DOCUMENT chat content become image and
document parts (domain/content_parts.py). A `src` is an https URL or a `data:` URL.

Refused, each with a 400 that names the input: AUDIO and VIDEO inputs and content (no provider
promptdeck calls takes them through a prompt), and a Vellum uploaded-file reference
(`vellum:uploaded-file:...`: promptdeck keeps no uploaded files to read it from).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict

from promptdeck.domain.content_parts import DETAILS, DocumentPart, ImagePart, part_data
from promptdeck.domain.media_sources import DOCUMENT, IMAGE, source_shape_problem
from promptdeck.domain.schema_problems import NonEmptyStr, fail

STRICT = ConfigDict(strict=True, extra="ignore")
UPLOADED_FILE = "vellum:uploaded-file:"
REFUSED_KINDS = ("AUDIO", "VIDEO")


def _source(kind: str) -> Any:
    def check(src: str) -> str:
        if src.startswith(UPLOADED_FILE):
            raise fail(
                "uploaded_file",
                f"a Vellum uploaded-file reference ({src!r}) cannot be read here: promptdeck keeps "
                "no uploaded files; send the file as an https URL or a data: URL",
            )
        if (problem := source_shape_problem(kind, src)) is not None:
            raise fail("media_source", problem)
        return src

    return AfterValidator(check)


class ImageValue(BaseModel):
    """`VellumImageRequest`; `metadata.detail` (`auto`, `low`, `high`) is the image's detail."""

    model_config = STRICT
    src: Annotated[str, _source(IMAGE)]
    metadata: dict[str, Any] | None = None

    def part(self) -> dict[str, Any]:
        detail = (self.metadata or {}).get("detail")
        return part_data(ImagePart(self.src, detail if detail in DETAILS else None))


class DocumentValue(BaseModel):
    """`VellumDocumentRequest`: a PDF."""

    model_config = STRICT
    src: Annotated[str, _source(DOCUMENT)]
    metadata: dict[str, Any] | None = None

    def part(self) -> dict[str, Any]:
        return part_data(DocumentPart(self.src))


def _refused_input(kind: str) -> str:
    raise fail(
        "not_supported",
        f"{kind} inputs are not supported: no provider promptdeck calls takes {kind.lower()} in a "
        "prompt; send STRING, JSON, CHAT_HISTORY, IMAGE or DOCUMENT",
    )


def _refused_content(kind: str) -> str:
    raise fail(
        "not_supported",
        f"{kind} content is not supported: no provider promptdeck calls takes {kind.lower()} in a "
        "prompt; send STRING, FUNCTION_CALL, IMAGE or DOCUMENT",
    )


class ImageInput(BaseModel):
    model_config = STRICT
    name: NonEmptyStr
    type: Literal["IMAGE"]
    value: ImageValue


class DocumentInput(BaseModel):
    model_config = STRICT
    name: NonEmptyStr
    type: Literal["DOCUMENT"]
    value: DocumentValue


class RefusedInput(BaseModel):
    """AUDIO and VIDEO inputs: refused by their type, whatever their value."""

    model_config = STRICT
    name: NonEmptyStr
    type: Annotated[str, AfterValidator(_refused_input)]


class ImageContent(BaseModel):
    model_config = STRICT
    type: Literal["IMAGE"]
    value: ImageValue


class DocumentContent(BaseModel):
    model_config = STRICT
    type: Literal["DOCUMENT"]
    value: DocumentValue


class RefusedContent(BaseModel):
    """AUDIO and VIDEO chat content: refused by its type, whatever its value."""

    model_config = STRICT
    type: Annotated[str, AfterValidator(_refused_content)]


MediaContent = ImageContent | DocumentContent
