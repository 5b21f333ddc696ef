"""OpenAI's content parts in a caller's messages, and what they are in promptdeck's shape
(domain/content_parts.py): `text`; `image_url` (`{url, detail?}`, or the URL alone) is an image
part; `file` (`{file_data, filename?}`, the file as a `data:` URL) a document part. URLs are
https or `data:` URLs.

Refused with a 400 that names the part's field: `file.file_id` (an uploaded OpenAI file:
promptdeck keeps none to read it from) and `input_audio` (no provider promptdeck calls takes
audio in a prompt).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator
from typing_extensions import TypeAliasType

from promptdeck.domain.content_parts import DocumentPart, ImagePart, part_data
from promptdeck.domain.media_sources import DOCUMENT, IMAGE, source_shape_problem
from promptdeck.domain.schema_problems import CHOICE, SILENT_TAG, at, by_type, fail

STRICT = ConfigDict(strict=True, extra="ignore")
MEDIA_PARTS = ("file", "image_url")


def _image_url(url: str) -> str:
    if (problem := source_shape_problem(IMAGE, url)) is not None:
        raise fail("media_source", problem)
    return url


def _file_data(data: str) -> str:
    if not data.startswith("data:"):
        raise fail("file_data", "expected the file as a data: URL (data:application/pdf;base64,...)")
    if (problem := source_shape_problem(DOCUMENT, data)) is not None:
        raise fail("media_source", problem)
    return data


ImageUrlText = Annotated[str, AfterValidator(_image_url)]


class TextPart(BaseModel):
    model_config = STRICT
    type: Literal["text"]
    text: str


class ImageUrl(BaseModel):
    model_config = STRICT
    url: ImageUrlText = Field(description="an https URL or a data: URL")
    detail: Literal["auto", "low", "high"] | None = None


def _image_url_shape(value: Any) -> str | None:
    if isinstance(value, str):
        return SILENT_TAG + "url"
    return SILENT_TAG + "object" if isinstance(value, dict) else None


class ImageUrlPart(BaseModel):
    model_config = STRICT
    type: Literal["image_url"]
    image_url: Annotated[
        Annotated[ImageUrlText, Tag("~url")] | Annotated[ImageUrl, Tag("~object")],
        Discriminator(
            _image_url_shape,
            custom_error_type=CHOICE,
            custom_error_message="expected {url, detail?} or a URL",
            custom_error_context={"field": None},
        ),
    ]

    def part(self) -> dict[str, Any]:
        given = self.image_url
        if isinstance(given, str):
            return part_data(ImagePart(given))
        return part_data(ImagePart(given.url, given.detail))


class FileRef(BaseModel):
    model_config = STRICT
    file_data: Annotated[str, AfterValidator(_file_data)] | None = Field(
        None, description="the file (a PDF) as a data: URL"
    )
    filename: str | None = None
    file_id: str | None = Field(None, description="refused: promptdeck keeps no uploaded files")

    @model_validator(mode="after")
    def _bytes_given(self) -> FileRef:
        if self.file_id is not None:
            message = (
                f"an uploaded OpenAI file ({self.file_id!r}) cannot be read here: promptdeck keeps no "
                "uploaded files; send the file as file_data (data:application/pdf;base64,...)"
            )
            raise at("FileRef", [(("file_id",), fail("file_id", message), self.file_id)])
        if self.file_data is None:
            message = "required: the file as a data: URL (data:application/pdf;base64,...)"
            raise at("FileRef", [(("file_data",), fail("file_data_required", message), None)])
        return self


class FilePart(BaseModel):
    model_config = STRICT
    type: Literal["file"]
    file: FileRef

    def part(self) -> dict[str, Any]:
        assert self.file.file_data is not None  # checked: `_bytes_given`
        return part_data(DocumentPart(self.file.file_data, None, self.file.filename))


def _refused(kind: str) -> str:
    raise fail(
        "not_supported",
        f"{kind} parts are not supported: no provider promptdeck calls takes audio in a prompt; "
        "send text, image_url or file parts",
    )


class RefusedPart(BaseModel):
    model_config = STRICT
    type: Annotated[str, AfterValidator(_refused)]


# An alias type: a union that holds it must hash it, and the discriminator's context cannot be.
Part = TypeAliasType(
    "Part",
    Annotated[
        Annotated[TextPart, Tag("=text")]
        | Annotated[ImageUrlPart, Tag("=image_url")]
        | Annotated[FilePart, Tag("=file")]
        | Annotated[RefusedPart, Tag("=input_audio")],
        Discriminator(
            by_type,
            custom_error_type=CHOICE,
            custom_error_message="expected a text, image_url or file part",
            custom_error_context={"field": "type"},
        ),
    ],
)


def media_types(content: str | list[Any] | None) -> list[str]:
    """The OpenAI names of the image and file parts a content has (`file`, `image_url`)."""
    found = {part.type for part in content or () if isinstance(part, ImageUrlPart | FilePart)}
    return [kind for kind in MEDIA_PARTS if kind in found]


def neutral_content(content: str | list[Any] | None) -> str | list[dict[str, Any]]:
    """Text as it is, text parts joined; with images or files, every part in order."""
    if content is None or isinstance(content, str):
        return content or ""
    if not media_types(content):
        return "".join(part.text for part in content if isinstance(part, TextPart))
    return [
        {"type": "text", "text": part.text} if isinstance(part, TextPart) else part.part()
        for part in content
        if isinstance(part, TextPart | ImageUrlPart | FilePart)
    ]
