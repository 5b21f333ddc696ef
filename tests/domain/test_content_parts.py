"""Content parts in versions (issue 18, part 1): a message's content is a string, as it always
was, or a list of text, image and document parts whose sources are fixed URLs, data: URLs or
`{{ variable }}` bound to an `image` or `document` input."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from promptdeck.domain.content_parts import DocumentPart, ImagePart, TextPart, stored_messages
from promptdeck.domain.deployments import Version
from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.inputs import render_messages, resolve_inputs, value_fits
from promptdeck.domain.media_capability import UnsupportedContent, media_refusal
from promptdeck.domain.media_sources import MediaPolicy, without_payloads
from promptdeck.domain.promotion import promotion_risks
from promptdeck.domain.prompt_sync import dump_prompt_file, pulled_document
from promptdeck.domain.promptfile import load_prompt_file
from promptdeck.domain.prompts import InputSpec, PromptSpec, parse_spec
from promptdeck.domain.version_diff import changes, render_lines

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
PDF_URL = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.7 tiny").decode()
PHOTO = "https://images.example.com/cat.jpg"


def parts_version(**extra: Any) -> dict[str, Any]:
    return {
        "model": "openai/gpt-4o",
        "messages": [
            {"role": "system", "content": "You describe pictures."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe this for {{ audience }}:"},
                    {"type": "image", "source": "{{ photo }}", "detail": "high"},
                    {"type": "image", "source": PNG_URL},
                    {"type": "document", "source": "{{ contract }}", "name": "contract.pdf"},
                ],
            },
        ],
        **extra,
    }


def version_of(spec: PromptSpec) -> Version:
    return Version("v1", "p1", "describe", 3, spec, "", "", datetime.now(UTC))


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        parse_spec(raw)
    return list(caught.value.details)


# --- parsing -------------------------------------------------------------------------------------


def test_parts_parse_and_bound_sources_declare_typed_inputs() -> None:
    spec = parse_spec(parts_version())
    assert spec.messages[1].content == (
        TextPart("Describe this for {{ audience }}:"),
        ImagePart("{{ photo }}", "high"),
        ImagePart(PNG_URL),
        DocumentPart("{{ contract }}", None, "contract.pdf"),
    )
    assert {name: decl.type for name, decl in spec.inputs.items()} == {
        "audience": "string",
        "photo": "image",
        "contract": "document",
    }
    assert spec.to_dict()["messages"][1]["content"][1] == {
        "type": "image",
        "source": "{{ photo }}",
        "detail": "high",
    }


@pytest.mark.parametrize(
    ("part", "problem"),
    [
        (
            {"type": "video", "source": PHOTO},
            "messages[0].content[0].type: expected one of text, image, document",
        ),
        ({"type": "image", "source": "http://example.com/a.png"}, "expected an https URL or a data: URL"),
        ({"type": "image", "source": "file:///etc/passwd"}, "expected an https URL or a data: URL"),
        ({"type": "image", "source": PDF_URL}, "images cannot be application/pdf"),
        ({"type": "document", "source": PNG_URL}, "documents cannot be image/png"),
        ({"type": "image", "source": "data:image/png;base64,@@@"}, "not valid base64"),
        ({"type": "image", "source": "data:image/png,rawbytes"}, "expected a base64 data: URL"),
        ({"type": "image", "source": PHOTO, "detail": "ultra"}, "detail: expected one of auto, low, high"),
        ({"type": "image", "source": PHOTO, "alt": "x"}, "alt: unknown field for image parts"),
        ({"type": "document", "source": PHOTO, "media_type": "text/plain"}, "only application/pdf"),
        ({"type": "text", "text": 3}, "messages[0].content[0].text: expected a string"),
    ],
)
def test_a_bad_part_is_refused_with_its_path(part: dict[str, Any], problem: str) -> None:
    raw = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": [part]}]}
    (found,) = problems_of(raw)
    assert found.startswith("messages[0].content[0]") and problem in found


def test_an_input_bound_to_a_part_must_have_its_type() -> None:
    raw = parts_version(inputs={"photo": {"type": "string"}})
    assert problems_of(raw) == [
        "inputs.photo.type: bound to the source of image parts, so expected image; got string"
    ]


def test_image_input_defaults_are_checked() -> None:
    raw = parts_version(inputs={"photo": {"type": "image", "default": "ftp://x/y.png"}})
    (problem,) = problems_of(raw)
    assert problem.startswith("inputs.photo.default: expected image: expected an https URL")


# --- hash and files ------------------------------------------------------------------------------


def test_a_string_content_version_keeps_its_hash() -> None:
    """The hash a text-only version had before parts existed (computed with the code before
    them): existing versions, files and exports stay valid, byte for byte."""
    raw = {
        "model": "openai/gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Describe {{ subject }} for {{audience}}."},
        ],
        "params": {"temperature": 0.2},
        "inputs": {"audience": {"type": "string", "default": "kids"}},
    }
    spec = parse_spec(raw)
    assert spec.to_dict()["messages"][1] == raw["messages"][1]
    assert spec.content_hash == "9795733a4cf09eabf14fdb0644b7ecdb1ecca5ad2c27365bad4b0b2450a7b0d8"


def test_parts_change_the_hash_and_parse_back_the_same() -> None:
    spec = parse_spec(parts_version())
    again = parse_spec(spec.to_dict())
    assert again == spec and again.content_hash == spec.content_hash
    other = parse_spec(
        parts_version() | {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}
    )
    assert other.content_hash != spec.content_hash
    as_text = parse_spec({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "x"}]})
    assert as_text.content_hash != other.content_hash  # a text part is not the same as a string


def test_a_pulled_parts_file_pushes_back_unchanged_byte_for_byte() -> None:
    spec = parse_spec(parts_version())
    text = dump_prompt_file(pulled_document("describe", "describe", "", version_of(spec), []))
    document = load_prompt_file(text)
    pushed = parse_spec(document, document.get("undeclared_variables"))
    assert pushed.content_hash == spec.content_hash
    again = dump_prompt_file(pulled_document("describe", "describe", "", version_of(pushed), []))
    assert again == text
    assert "source: '{{ photo }}'" in text and "detail: high" in text


# --- invoke-time inputs and rendering ------------------------------------------------------------


def test_parts_render_with_bound_sources_and_text_templates() -> None:
    spec = parse_spec(parts_version())
    values = resolve_inputs(spec, {"audience": "kids", "photo": PHOTO, "contract": PDF_URL})
    (_, user) = render_messages(spec, values)
    assert user.content == (
        TextPart("Describe this for kids:"),
        ImagePart(PHOTO, "high"),
        ImagePart(PNG_URL),
        DocumentPart(PDF_URL, None, "contract.pdf"),
    )


def test_jinja_text_parts_render_and_an_optional_empty_image_is_left_out() -> None:
    raw = parts_version(
        template_syntax="jinja2",
        inputs={
            "photo": {"type": "image", "required": False},
            "contract": {"type": "document", "required": False},
        },
    )
    raw["messages"][1]["content"][0]["text"] = "{% if audience %}For {{ audience | upper }}{% endif %}"
    spec = parse_spec(raw)
    (_, user) = render_messages(spec, resolve_inputs(spec, {"audience": "kids"}))
    assert user.content == (TextPart("For KIDS"), ImagePart(PNG_URL))


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        (
            {"photo": "http://example.com/a.png"},
            "photo (expected image: expected an https URL or a data: URL",
        ),
        ({"photo": 7}, "photo (expected image: expected an https URL or a data: URL, got int)"),
        (
            {"photo": "data:image/tiff;base64,AAAA"},
            "photo (expected image: image/tiff is not allowed here (allowed: image/png, image/jpeg))",
        ),
        (
            {"photo": PNG_URL.replace("image/png", "image/jpeg") + "A" * 200},
            "is over this server's limit of 100",
        ),
        ({"contract": PNG_URL}, "contract (expected document: documents cannot be image/png)"),
    ],
)
def test_media_inputs_follow_the_server_policy(given: dict[str, Any], problem: str) -> None:
    spec = parse_spec(parts_version())
    policy = MediaPolicy(image_types=("image/png", "image/jpeg"), max_bytes=100)
    values = {"audience": "kids", "photo": PHOTO, "contract": PDF_URL} | given
    with pytest.raises(ValidationFailed) as caught:
        resolve_inputs(spec, values, policy)
    assert caught.value.message.startswith("wrong input type: ")
    assert problem in caught.value.message


def test_the_default_policy_takes_a_png_data_url() -> None:
    spec = parse_spec(parts_version())
    assert resolve_inputs(spec, {"audience": "a", "photo": PNG_URL, "contract": PHOTO})["photo"] == PNG_URL


# --- what a run keeps ----------------------------------------------------------------------------


def test_a_run_keeps_urls_and_only_the_digest_of_data_urls() -> None:
    digest = {"media_type": "image/png", "size": len(PNG), "sha256": hashlib.sha256(PNG).hexdigest()}
    inputs = {"photo": PNG_URL, "url": PHOTO, "note": "data: not a URL", "nested": [{"x": PNG_URL}]}
    assert without_payloads(inputs) == {
        "photo": digest,
        "url": PHOTO,
        "note": "data: not a URL",
        "nested": [{"x": digest}],
    }
    plain = {"text": "hello", "n": [1, 2]}
    assert without_payloads(plain) is plain  # nothing to hide: no copy
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image", "source": PNG_URL}]}
    ]
    assert stored_messages(messages)[0]["content"][1] == {"type": "image", "source": digest}
    assert PNG_URL not in repr(stored_messages(messages))


# --- diff and promotion --------------------------------------------------------------------------


def test_the_diff_shows_parts_without_their_bytes() -> None:
    old = parse_spec(parts_version())
    raw = parts_version()
    raw["messages"][1]["content"][1]["detail"] = "low"
    new = parse_spec(raw)
    lines = render_lines(old)
    assert '    image: {{ photo }} detail="high"' in lines
    assert any(line.startswith(f"    image: data:image/png ({len(PNG)} bytes, sha256 ") for line in lines)
    assert '    document: {{ contract }} name="contract.pdf"' in lines
    assert "    text:" in lines and "      Describe this for {{ audience }}:" in lines
    assert not any(PNG_URL in line for line in lines)
    (change,) = changes(old, new)
    assert (change["part"], change["change"]) == ("messages[1]", "changed")


def test_promotion_counts_runs_that_sent_no_image_and_accepts_kept_digests() -> None:
    old = parse_spec({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "{{ photo }}"}]})
    new = parse_spec(parts_version())
    digest = without_payloads(PNG_URL)
    recent = [{"photo": PHOTO, "contract": PHOTO, "audience": "a"}, {"photo": digest, "audience": "a"}]
    risks = promotion_risks(old, new, recent)
    assert {(r["input"], r["problem"], r["runs_affected"]) for r in risks} == {
        ("contract", "missing", 1),
        ("photo", "type_changed", 0),  # both runs sent what an image input takes
    }
    assert value_fits(InputSpec(type="image"), digest) and not value_fits(InputSpec(type="image"), "cat")


# --- which models take which parts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "model", "part", "says"),
    [
        ("text-only", "smollm2-135m-instruct", {"type": "image", "source": PHOTO}, "it reads text only"),
        ("openai-chat", "gpt-3.5-turbo", {"type": "image", "source": PHOTO}, "it reads text only"),
        ("openai-compatible", "llava", {"type": "document", "source": PDF_URL}, "its API takes no document"),
    ],
)
def test_a_model_that_cannot_take_a_part_is_refused_by_name(
    family: str, model: str, part: dict[str, Any], says: str
) -> None:
    with pytest.raises(UnsupportedContent) as caught:
        media_refusal(family, f"p/{model}", model, [part])
    assert f"model 'p/{model}' cannot take {part['type']} parts" in caught.value.message
    assert says in caught.value.message
    assert caught.value.details == {"model": f"p/{model}", "part": part["type"]}


@pytest.mark.parametrize(
    ("family", "model"),
    [
        ("openai-chat", "gpt-4o"),
        ("openai-responses", "gpt-5"),
        ("anthropic", "claude-sonnet-4-5"),
        ("gemini", "gemini-2.5-flash"),
    ],
)
def test_vision_models_take_images_and_pdfs(family: str, model: str) -> None:
    media_refusal(
        family,
        f"p/{model}",
        model,
        [{"type": "image", "source": PHOTO}, {"type": "document", "source": PDF_URL}],
    )
