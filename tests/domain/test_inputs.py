"""Invoke-time checks: inputs against a version, rendering, and metadata shape."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.inputs import check_flat_metadata, render_messages, resolve_inputs
from promptdeck.domain.prompts import Message, PromptSpec, parse_spec


def spec(inputs: dict[str, Any] | None = None, template: str = "{{ text }}") -> PromptSpec:
    return parse_spec(
        {"model": "local/m", "messages": [{"role": "user", "content": template}], "inputs": inputs or {}}
    )


def failure(spec: PromptSpec, given: dict[str, Any]) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        resolve_inputs(spec, given)
    return caught.value


def test_given_values_are_used() -> None:
    assert resolve_inputs(spec(), {"text": "hello"}) == {"text": "hello"}


def test_a_missing_required_input_is_named() -> None:
    error = failure(spec(), {})
    assert error.message == "missing required input: text"
    assert error.details == {"missing": ["text"], "wrong_type": []}


def test_every_missing_input_is_named_at_once() -> None:
    error = failure(spec(template="{{ a }} {{ b }} {{ c }}"), {"b": "ok"})
    assert error.message == "missing required inputs: a, c"
    assert error.details["missing"] == ["a", "c"]


def test_null_counts_as_missing() -> None:
    assert failure(spec(), {"text": None}).details["missing"] == ["text"]


def test_defaults_fill_in_missing_and_null_values() -> None:
    s = spec(
        {"tone": {"type": "string", "default": "dry"}, "n": {"type": "integer", "default": 0}},
        template="{{ text }} {{ tone }} {{ n }}",
    )
    assert resolve_inputs(s, {"text": "t"}) == {"text": "t", "tone": "dry", "n": 0}
    assert resolve_inputs(s, {"text": "t", "tone": None}) == {"text": "t", "tone": "dry", "n": 0}
    assert resolve_inputs(s, {"text": "t", "tone": "warm", "n": 2}) == {"text": "t", "tone": "warm", "n": 2}


def test_optional_inputs_left_out_render_as_nothing() -> None:
    """A literal `{{ hint }}` must never reach the model."""
    s = spec({"hint": {"type": "string", "required": False}}, template="{{ text }} {{ hint }}")
    values = resolve_inputs(s, {"text": "t"})
    assert values == {"text": "t", "hint": ""}
    assert render_messages(s, values) == [Message("user", "t ")]


def test_extra_inputs_are_passed_through() -> None:
    assert resolve_inputs(spec(), {"text": "t", "unused": 1}) == {"text": "t", "unused": 1}


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        ("string", ["", "x"], [1, True, ["x"], {"a": "b"}]),
        ("number", [1, 1.5, -3], ["1", True, False, [1]]),
        ("integer", [0, -7, 2**40], [1.0, "1", True]),
        ("boolean", [True, False], [0, 1, "true"]),
        ("json", [{"a": [1]}, [1, 2], "s", 3, False], []),
    ],
)
def test_types(kind: str, good: list[Any], bad: list[Any]) -> None:
    s = spec({"v": {"type": kind}}, template="{{ v }}")
    for value in good:
        assert resolve_inputs(s, {"v": value}) == {"v": value}
    for value in bad:
        error = failure(s, {"v": value})
        assert error.message == f"wrong input type: v (expected {kind}, got {type(value).__name__})"


def test_missing_and_wrong_types_are_reported_together() -> None:
    s = spec({"n": "integer", "flag": "boolean"}, template="{{ text }} {{ n }} {{ flag }}")
    error = failure(s, {"n": "three", "flag": "yes"})
    assert error.message == (
        "missing required input: text; "
        "wrong input type: n (expected integer, got str), flag (expected boolean, got str)"
    )
    assert error.details == {
        "missing": ["text"],
        "wrong_type": ["n (expected integer, got str)", "flag (expected boolean, got str)"],
    }


def test_render_messages_renders_every_message() -> None:
    s = parse_spec(
        {
            "model": "local/m",
            "messages": [
                {"role": "system", "content": "Reply in {{lang}}."},
                {"role": "user", "content": "Items: {{ items }}"},
            ],
            "inputs": {"items": "json"},
        }
    )
    values = resolve_inputs(s, {"lang": "French", "items": ["a", {"b": 1}]})
    assert render_messages(s, values) == [
        Message("system", "Reply in French."),
        Message("user", 'Items: ["a",{"b":1}]'),
    ]


# ── metadata ─────────────────────────────────────────────────────────────────


def test_flat_metadata_is_accepted() -> None:
    metadata = {"team": "growth", "n": 3, "ratio": 0.5, "beta": True, "none": None}
    assert check_flat_metadata(metadata) == metadata


@pytest.mark.parametrize("metadata", [None, {}])
def test_no_metadata_is_an_empty_object(metadata: Any) -> None:
    assert check_flat_metadata(metadata) == {}


@pytest.mark.parametrize("metadata", [[], "team=growth", 3, ["a"]], ids=repr)
def test_metadata_must_be_an_object(metadata: Any) -> None:
    with pytest.raises(ValidationFailed, match="metadata must be an object"):
        check_flat_metadata(metadata)


@pytest.mark.parametrize(
    ("metadata", "what"),
    [({"tags": ["a", "b"]}, "a list"), ({"user": {"id": 1}}, "an object")],
)
def test_nested_metadata_is_refused(metadata: dict[str, Any], what: str) -> None:
    key = next(iter(metadata))
    with pytest.raises(ValidationFailed) as caught:
        check_flat_metadata(metadata)
    assert caught.value.message.startswith(f"metadata must be flat: the value of {key!r} is {what}")


def test_empty_metadata_keys_are_refused() -> None:
    with pytest.raises(ValidationFailed, match="non-empty"):
        check_flat_metadata({"": "x"})


SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()


@given(st.dictionaries(st.text(min_size=1), SCALARS))
def test_any_flat_object_is_accepted(metadata: dict[str, Any]) -> None:
    assert check_flat_metadata(metadata) == metadata


@given(
    st.dictionaries(st.text(min_size=1), SCALARS),
    st.text(min_size=1),
    st.lists(SCALARS) | st.dictionaries(st.text(), SCALARS),
)
def test_any_nested_value_is_refused(metadata: dict[str, Any], key: str, nested: Any) -> None:
    with pytest.raises(ValidationFailed, match="metadata must be flat"):
        check_flat_metadata({**metadata, key: nested})
