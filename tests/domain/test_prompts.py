"""`parse_spec`: the rules a prompt version follows, and its content hash."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.prompts import PARAMETERS, InputSpec, Message, check_slug, parse_spec


def spec_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "model": "local/smollm2-135m-instruct",
        "messages": [
            {"role": "system", "content": "You answer in {{ language }}."},
            {"role": "user", "content": "{{question}}"},
        ],
        "params": {"temperature": 0.2, "max_tokens": 64},
    }
    data.update(overrides)
    return data


def problems_of(raw: Any) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        parse_spec(raw)
    assert isinstance(caught.value.details, list)
    assert caught.value.message.startswith("invalid prompt version: ")
    for problem in caught.value.details:
        assert problem in caught.value.message
    return list(caught.value.details)


def test_a_valid_spec() -> None:
    spec = parse_spec(spec_data())
    assert spec.model == "local/smollm2-135m-instruct"
    assert spec.provider == "local"
    assert spec.messages == (
        Message("system", "You answer in {{ language }}."),
        Message("user", "{{question}}"),
    )
    assert spec.params == {"temperature": 0.2, "max_tokens": 64}


def test_undeclared_template_variables_become_required_strings() -> None:
    spec = parse_spec(spec_data(inputs={"question": {"type": "string", "description": "what to ask"}}))
    assert list(spec.inputs) == ["question", "language"]
    assert spec.inputs["question"] == InputSpec(description="what to ask")
    assert spec.inputs["language"] == InputSpec(type="string", required=True)


def test_declared_inputs_are_kept_even_when_unused() -> None:
    spec = parse_spec(spec_data(inputs={"tone": {"type": "string", "default": "dry"}}))
    assert spec.inputs["tone"] == InputSpec(type="string", required=False, default="dry")


@pytest.mark.parametrize(
    ("decl", "expected"),
    [
        (None, InputSpec()),
        ("integer", InputSpec(type="integer")),
        ({"type": "json", "required": False}, InputSpec(type="json", required=False)),
        ({"type": "boolean", "default": False}, InputSpec(type="boolean", required=False, default=False)),
        ({"default": "x", "required": True}, InputSpec(required=True, default="x")),
    ],
)
def test_input_declarations(decl: Any, expected: InputSpec) -> None:
    assert parse_spec(spec_data(inputs={"extra": decl})).inputs["extra"] == expected


@pytest.mark.parametrize("model", ["smollm2", "/smollm2", "local/", "", None, 42, ["local/x"]], ids=repr)
def test_model_must_be_provider_slash_model(model: Any) -> None:
    (problem,) = problems_of(spec_data(model=model))
    assert problem.startswith("model: expected 'provider/model'")


def test_models_may_have_more_slashes() -> None:
    assert parse_spec(spec_data(model="openai/org/model-1")).provider == "openai"


@pytest.mark.parametrize("role", ["system", "user", "assistant"])
def test_every_role_is_accepted(role: str) -> None:
    assert parse_spec(spec_data(messages=[{"role": role, "content": "x"}])).messages[0].role == role


@pytest.mark.parametrize("role", ["bot", "tool", "System", None, 1])
def test_unknown_roles_are_refused(role: Any) -> None:
    (problem,) = problems_of(
        spec_data(messages=[{"role": "user", "content": "a"}, {"role": role, "content": "b"}])
    )
    assert problem == f"messages[1].role: expected one of system, user, assistant; got {role!r}"


@pytest.mark.parametrize("messages", [None, [], "hello", {"role": "user"}], ids=repr)
def test_messages_must_be_a_non_empty_list(messages: Any) -> None:
    assert problems_of(spec_data(messages=messages)) == [
        "messages: expected a non-empty list of {role, content}"
    ]


def test_message_shape() -> None:
    problems = problems_of(spec_data(messages=["hi", {"role": "user"}, {"role": "user", "content": 3}]))
    assert problems == [
        "messages[0]: expected an object with role and content",
        "messages[1].content: expected a string, or a non-empty list of parts ({type, ...} objects)",
        "messages[2].content: expected a string, or a non-empty list of parts ({type, ...} objects)",
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 0},
        {"temperature": 2.0},
        {"top_p": 1},
        {"max_tokens": 1, "seed": -5},
        {"presence_penalty": -2, "frequency_penalty": 2.0},
        {"stop": "\n"},
        {"stop": ["\n", "END"]},
        {},
    ],
    ids=repr,
)
def test_valid_params(params: dict[str, Any]) -> None:
    assert parse_spec(spec_data(params=params)).params == params


def test_parameters_is_not_a_second_name_for_params() -> None:
    """One spelling everywhere: a pushed `parameters` is an unknown field, not silently used."""
    from promptdeck.domain.promptfile import check_document

    assert parse_spec({**spec_data(), "params": None, "parameters": {"seed": 1}}).params == {}
    with pytest.raises(ValidationFailed, match="parameters: unknown field"):
        check_document({**spec_data(), "prompt": "p", "parameters": {"seed": 1}})


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"temperature": 2.5}, "params.temperature: must be between 0.0 and 2.0; got 2.5"),
        ({"temperature": -0.1}, "params.temperature: must be between 0.0 and 2.0; got -0.1"),
        ({"temperature": "hot"}, "params.temperature: expected int or float; got 'hot'"),
        ({"temperature": True}, "params.temperature: expected int or float; got True"),
        ({"top_p": 1.5}, "params.top_p: must be between 0.0 and 1.0; got 1.5"),
        ({"max_tokens": 0}, "params.max_tokens: must be between 1 and 1000000; got 0"),
        ({"max_tokens": 10.0}, "params.max_tokens: expected int; got 10.0"),
        ({"seed": 1.5}, "params.seed: expected int; got 1.5"),
        ({"frequency_penalty": 3}, "params.frequency_penalty: must be between -2.0 and 2.0; got 3"),
        ({"stop": 5}, "params.stop: expected str or list; got 5"),
        ({"stop": ["ok", 1]}, "params.stop: expected a string or a list of strings"),
        ({"temp": 1}, "params.temp: unknown parameter (known: " + ", ".join(PARAMETERS) + ")"),
    ],
    ids=repr,
)
def test_invalid_params(params: dict[str, Any], problem: str) -> None:
    assert problems_of(spec_data(params=params)) == [problem]


def test_params_must_be_an_object() -> None:
    assert problems_of(spec_data(params=[1])) == ["params: expected an object"]


@pytest.mark.parametrize("name", ["temperature", "top_p", "presence_penalty", "frequency_penalty"])
@given(value=st.floats())
def test_numeric_params_are_finite_and_in_range(name: str, value: float) -> None:
    """NaN compares false with every bound, so it must be refused on its own (YAML writes it `.nan`)."""
    _, low, high = PARAMETERS[name]
    try:
        spec = parse_spec(spec_data(params={name: value}))
    except ValidationFailed as exc:
        assert exc.details[0].startswith(f"params.{name}: ")
    else:
        accepted = spec.params[name]
        assert math.isfinite(accepted) and low <= accepted <= high  # type: ignore[operator]


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        (
            {"x": {"type": "float"}},
            "inputs.x.type: expected one of string, number, integer, boolean, json, chat_history, "
            "image, document; "
            "got 'float'",
        ),
        ({"x": {"required": "yes"}}, "inputs.x.required: expected true or false"),
        ({"x": {"description": 5}}, "inputs.x.description: expected a string"),
        ({"x": 5}, "inputs.x: expected an object with type, required, default, description"),
        ({"1x": None}, "inputs: '1x' is not a valid variable name"),
        ({"a-b": None}, "inputs: 'a-b' is not a valid variable name"),
    ],
    ids=repr,
)
def test_invalid_inputs(inputs: dict[str, Any], problem: str) -> None:
    assert problems_of(spec_data(inputs=inputs)) == [problem]


def test_inputs_must_be_an_object() -> None:
    (problem,) = problems_of(spec_data(inputs=["text"]))
    assert problem.startswith("inputs: expected an object")


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of(
        {
            "model": "nope",
            "messages": [{"role": "bot", "content": 1}],
            "params": {"temperature": 9, "max_tokens": "many", "colour": "red"},
            "inputs": {"x": {"type": "float"}},
        }
    )
    assert [p.split(":", 1)[0] for p in problems] == [
        "model",
        "messages[0].role",
        "messages[0].content",
        "params.temperature",
        "params.max_tokens",
        "params.colour",
        "inputs.x.type",
    ]


@pytest.mark.parametrize("raw", [None, [], "model: local/x", 3], ids=repr)
def test_a_spec_must_be_an_object(raw: Any) -> None:
    with pytest.raises(ValidationFailed, match="must be an object"):
        parse_spec(raw)


# ── content hash ─────────────────────────────────────────────────────────────


def test_content_hash_is_stable() -> None:
    first = parse_spec(spec_data(inputs={"a": "string", "b": {"type": "integer", "default": 3}}))
    again = parse_spec(spec_data(inputs={"b": {"type": "integer", "default": 3}, "a": "string"}))
    assert first.content_hash == again.content_hash
    assert len(first.content_hash) == 64 and int(first.content_hash, 16) >= 0
    # extra top-level fields (note, deploy, name…) are not content
    assert (
        parse_spec({**spec_data(), "note": "n", "deploy": {"x": {}}}).content_hash
        == parse_spec(spec_data()).content_hash
    )


def test_content_hash_survives_a_round_trip_through_to_dict() -> None:
    spec = parse_spec(spec_data(inputs={"a": {"type": "json", "required": False, "description": "d"}}))
    assert parse_spec(spec.to_dict()).content_hash == spec.content_hash


@pytest.mark.parametrize(
    "change",
    [
        {"model": "local/other"},
        {
            "messages": [
                {"role": "system", "content": "You answer in {{ language }}!"},
                {"role": "user", "content": "{{question}}"},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "{{question}}"},
                {"role": "system", "content": "You answer in {{ language }}."},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "You answer in {{ language }}."},
                {"role": "user", "content": "{{question}}"},
            ]
        },
        {"params": {"temperature": 0.3, "max_tokens": 64}},
        {"params": {"temperature": 0.2}},
        {"inputs": {"question": {"type": "string", "description": "q"}}},
        {"inputs": {"language": {"type": "string", "default": "French"}}},
    ],
    ids=lambda change: next(iter(change)),
)
def test_content_hash_changes_with_content(change: dict[str, Any]) -> None:
    assert parse_spec(spec_data(**change)).content_hash != parse_spec(spec_data()).content_hash


@given(a=st.text(), b=st.text())
def test_content_hash_tells_contents_apart(a: str, b: str) -> None:
    first = parse_spec(spec_data(messages=[{"role": "user", "content": a}]))
    second = parse_spec(spec_data(messages=[{"role": "user", "content": b}]))
    assert (first.content_hash == second.content_hash) == (a == b)


# ── slugs ────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("slug", ["a", "summarize", "v1.2_beta-3", "0day", "x" * 100])
def test_valid_slugs(slug: str) -> None:
    assert check_slug(slug, "prompt") == slug


@pytest.mark.parametrize(
    "slug", ["", "Summarize", "-x", ".x", "has space", "x" * 101, None, 5, "é"], ids=repr
)
def test_invalid_slugs(slug: Any) -> None:
    with pytest.raises(ValidationFailed, match=r"^prompt must be 1-100 characters"):
        check_slug(slug, "prompt")


def test_tools_tool_choice_and_response_format() -> None:
    """A version may carry JSON-Schema tools, a tool choice and a response format."""
    weather = {"name": "get_weather", "description": "Weather now", "parameters": {"type": "object"}}
    spec = parse_spec(
        {
            **spec_data(),
            "tools": [weather],
            "tool_choice": {"name": "get_weather"},
            "response_format": {
                "type": "json_schema",
                "name": "w",
                "schema": {"type": "object"},
                "strict": True,
            },
        }
    )
    assert spec.tools == [weather]
    assert spec.tool_choice == {"name": "get_weather"}
    assert spec.response_format == {
        "type": "json_schema",
        "name": "w",
        "schema": {"type": "object"},
        "strict": True,
    }
    assert spec.to_dict()["tools"] == [weather]


def test_optional_parts_do_not_change_older_hashes() -> None:
    """Versions made before tools existed keep their content hash (so push stays idempotent)."""
    plain = parse_spec(spec_data())
    assert "tools" not in plain.to_dict() and "response_format" not in plain.to_dict()
    assert plain.content_hash == parse_spec({**spec_data(), "tools": None}).content_hash
    assert plain.content_hash != parse_spec({**spec_data(), "tools": [{"name": "t"}]}).content_hash


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"tools": "x"}, "tools: expected a list"),
        ({"tools": [{"name": "has space"}]}, "tools[0].name"),
        ({"tools": [{"name": "t", "parameters": []}]}, "tools[0].parameters"),
        ({"tool_choice": "always"}, "tool_choice: expected one of auto, none, required"),
        ({"tools": [{"name": "t"}], "tool_choice": {"name": "other"}}, "tool_choice"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.schema"),
    ],
)
def test_bad_tools_and_formats_are_named(extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationFailed, match=re.escape(problem)):
        parse_spec({**spec_data(), **extra})
