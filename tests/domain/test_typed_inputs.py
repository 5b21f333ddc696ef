"""Typed inputs: declarations checked at version creation, values checked at invoke, every
problem reported at once; chat_history slots; extra inputs; undeclared variables."""

from __future__ import annotations

from typing import Any

import pytest

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.inputs import render_messages, resolve_inputs
from promptdeck.domain.prompts import InputSpec, Message, PromptSpec, parse_spec

ORDER_SCHEMA = {
    "type": "object",
    "required": ["id", "items"],
    "properties": {
        "id": {"type": "integer"},
        "items": {
            "type": "array",
            "items": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}}},
        },
    },
}


def spec(inputs: dict[str, Any], *messages: str | tuple[str, str], **extra: Any) -> PromptSpec:
    raw_messages = [
        {"role": m[0], "content": m[1]} if isinstance(m, tuple) else {"role": "user", "content": m}
        for m in messages
    ]
    return parse_spec({"model": "local/m", "messages": raw_messages, "inputs": inputs, **extra})


def failure(s: PromptSpec, given: dict[str, Any]) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        resolve_inputs(s, given)
    return caught.value


def refused(raw: dict[str, Any], undeclared: str = "declare") -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        parse_spec({"model": "local/m", **raw}, undeclared)
    assert isinstance(caught.value.details, list)
    return list(caught.value.details)


# ── declarations ────────────────────────────────────────────────────────────


def test_a_json_input_takes_a_schema_kept_in_its_declaration() -> None:
    s = spec({"order": {"type": "json", "schema": ORDER_SCHEMA, "description": "the order"}}, "{{ order }}")
    assert s.inputs["order"] == InputSpec("json", True, None, "the order", ORDER_SCHEMA)
    assert s.to_dict()["inputs"]["order"]["schema"] == ORDER_SCHEMA


def test_optional_parts_stay_out_of_the_hash_when_unset() -> None:
    s = spec({"text": "string"}, "{{ text }}")
    assert set(s.to_dict()) == {"model", "messages", "params", "inputs"}
    assert s.to_dict()["inputs"]["text"] == {"type": "string", "required": True}
    forbid = spec({"text": "string"}, "{{ text }}", extra_inputs="forbid")
    assert forbid.to_dict()["extra_inputs"] == "forbid" and forbid.content_hash != s.content_hash
    assert spec({"text": "string"}, "{{ text }}", extra_inputs="allow").content_hash == s.content_hash


@pytest.mark.parametrize(
    ("decl", "problem"),
    [
        ({"type": "integer", "default": "3"}, "inputs.x.default: expected integer, got str"),
        ({"type": "boolean", "default": 1}, "inputs.x.default: expected boolean, got int"),
        (
            {"type": "json", "schema": ORDER_SCHEMA, "default": {"id": "a", "items": []}},
            "inputs.x.default: schema violation at $.id: 'a' is not of type 'integer'",
        ),
        ({"type": "json", "schema": {"type": "nope"}}, "inputs.x.schema: not a valid JSON Schema"),
        ({"type": "string", "schema": {"type": "string"}}, "inputs.x.schema: only a json input"),
        (
            {"type": "chat_history", "default": [{"role": "robot", "content": "hi"}]},
            "inputs.x.default: expected chat_history: [0].role",
        ),
    ],
)
def test_declarations_and_defaults_are_checked_at_creation(decl: dict[str, Any], problem: str) -> None:
    problems = refused({"messages": [{"role": "user", "content": "{{ x }}"}], "inputs": {"x": decl}})
    assert any(p.startswith(problem) for p in problems), problems


def test_extra_inputs_must_be_allow_or_forbid() -> None:
    problems = refused({"messages": [{"role": "user", "content": "hi"}], "extra_inputs": "maybe"})
    assert problems == ["extra_inputs: expected one of allow, forbid; got 'maybe'"]


# ── undeclared variables ────────────────────────────────────────────────────


def test_undeclared_variables_are_declared_as_required_strings_by_default() -> None:
    s = spec({}, "{{ text }} for {{ order.items.0.sku }}")
    assert s.inputs == {"text": InputSpec(), "order": InputSpec(type="json")}


def test_undeclared_variables_can_be_refused_naming_each() -> None:
    problems = refused(
        {"messages": [{"role": "user", "content": "{{ a }} {{ b }} {{ c.d }}"}], "inputs": {"b": "string"}},
        "refuse",
    )
    assert problems == [
        "inputs.a: used in the messages but not declared (this prompt refuses undeclared variables)",
        "inputs.c: used in the messages but not declared (this prompt refuses undeclared variables)",
    ]
    declared = {"a": "string", "b": "string", "c": "json"}
    parse_spec({"model": "local/m", "messages": [{"role": "user", "content": "{{ a }}{{ b }}{{ c.d }}"}],
                "inputs": declared}, "refuse")  # fmt: skip


# ── invoke-time values ──────────────────────────────────────────────────────


def test_every_problem_is_reported_at_once() -> None:
    s = spec(
        {
            "text": "string",
            "n": "integer",
            "order": {"type": "json", "schema": ORDER_SCHEMA},
            "history": {"type": "chat_history", "required": False},
        },
        "{{ text }} {{ n }} {{ order.id }}",
        "{{ history }}",
        extra_inputs="forbid",
    )
    error = failure(s, {"n": "3", "order": {"id": "x", "items": [{"sku": 5}]}, "surprise": 1, "also": 2})
    assert error.message == (
        "missing required input: text; "
        "wrong input type: n (expected integer, got str); "
        "schema violation: order: schema violation at $.id: 'x' is not of type 'integer'; "
        "order: schema violation at $.items[0].sku: 5 is not of type 'string'; "
        "unexpected inputs (this version forbids extras): surprise, also"
    )
    assert error.details["missing"] == ["text"]
    assert error.details["wrong_type"] == ["n (expected integer, got str)"]
    assert len(error.details["schema"]) == 2
    assert error.details["unexpected"] == ["surprise", "also"]


def test_extras_are_allowed_by_default() -> None:
    s = spec({"text": "string"}, "{{ text }}")
    assert resolve_inputs(s, {"text": "t", "other": 1}) == {"text": "t", "other": 1}


def test_dotted_paths_reach_into_json_inputs() -> None:
    s = spec({"order": "json"}, "First: {{ order.items.0.sku }} of {{ order.id }}; all {{ order.items }}")
    values = resolve_inputs(s, {"order": {"id": 7, "items": [{"sku": "A-1"}, {"sku": "B-2"}]}})
    assert render_messages(s, values) == [
        Message("user", 'First: A-1 of 7; all [{"sku":"A-1"},{"sku":"B-2"}]')
    ]


def test_a_missing_path_is_a_validation_error_naming_it() -> None:
    s = spec({"order": "json"}, "{{ order.items.3.sku }} {{ order.customer.name }} {{ order.id }}")
    error = failure(s, {"order": {"id": 1, "items": [{"sku": "a"}]}})
    assert error.message == "missing paths in inputs: order.items.3.sku, order.customer.name"
    assert error.details["paths"] == ["order.items.3.sku", "order.customer.name"]


HISTORY = [
    {"role": "user", "content": "Hi {{ not_a_placeholder }}"},
    {"role": "assistant", "content": "Hello!"},
]


def test_chat_history_is_inserted_where_the_template_puts_it() -> None:
    s = spec(
        {"history": {"type": "chat_history", "description": "earlier turns"}},
        ("system", "Be brief."),
        ("user", "{{ history }}"),
        ("user", "{{ question }}"),
    )
    values = resolve_inputs(s, {"history": HISTORY, "question": "And now?"})
    assert render_messages(s, values) == [
        Message("system", "Be brief."),
        Message("user", "Hi {{ not_a_placeholder }}"),  # history content is not a template
        Message("assistant", "Hello!"),
        Message("user", "And now?"),
    ]


def test_an_optional_chat_history_left_out_inserts_nothing() -> None:
    s = spec({"history": {"type": "chat_history", "required": False}}, ("system", "S"), "{{ history }}")
    assert render_messages(s, resolve_inputs(s, {})) == [Message("system", "S")]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("hi", "expected chat_history, got str"),
        ([{"role": "user"}], "expected chat_history, got list"),
        ([{"role": "robot", "content": "x"}], "expected chat_history, got list"),
    ],
)
def test_a_chat_history_must_be_a_list_of_messages(value: Any, problem: str) -> None:
    s = spec({"history": "chat_history"}, "{{ history }}")
    assert problem in failure(s, {"history": value}).message
