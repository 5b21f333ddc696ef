"""The request-body models and `domain/schema_problems`, without a server: every problem of a body is
reported at once, each at its field's path in the dialect's words."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.schema_problems import Problem, described, path_of, problems
from promptdeck.surfaces import fetchhive_requests, openai_requests, vellum_requests
from promptdeck.surfaces.openai_wire import WireError


def refused(adapter: TypeAdapter[Any], body: Any) -> list[Problem]:
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python(body)
    return problems(caught.value)


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        ((), ""),
        (("model",), "model"),
        (("messages", 0, "content"), "messages[0].content"),
        (("messages", 1, "content", 0, "text"), "messages[1].content[0].text"),
        (("stream_options", "include_usage"), "stream_options.include_usage"),
        (("raw_overrides", "headers", "x-trace"), "raw_overrides.headers.x-trace"),
        (("metadata", "a b"), "metadata['a b']"),
    ],
)
def test_a_loc_is_a_path_in_openais_style(loc: tuple[str | int, ...], path: str) -> None:
    assert path_of(loc) == path


def test_union_tags_are_left_out_of_the_path_and_a_type_tag_is_said() -> None:
    body = {"model": "fast", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}
    (found,) = refused(openai_requests.CHAT_BODY, body)
    assert found.loc == ("messages", 0, "content", 0, "text") and found.shape == "text"
    assert str(found) == "messages[0].content[0].text: expected a string; got 1 (type text)"

    nested = {"prompt_deployment_name": "d", "inputs": [{"name": "x", "type": "STRING", "value": 3}]}
    (found,) = refused(vellum_requests.EXECUTE_BODY, nested)
    assert found.loc == ("inputs", 0, "value") and found.shape == "STRING"
    assert str(found) == "inputs[0].value: expected a string; got 3 (type STRING)"


def test_every_problem_at_once_with_what_was_expected_and_got() -> None:
    body = {"deployment": 7, "inputs": [], "streaming": "no", "user": {}, "metadata": {"a": {}}}
    found = refused(fetchhive_requests.INVOKE_BODY, body)
    assert [str(p) for p in found] == [
        "deployment: expected a string; got 7",
        "inputs: expected an object; got an empty array",
        "streaming: expected true or false; got 'no'",
        "user: expected a string; got an empty object",
        "metadata: must be flat: 'a' is an object; use only strings, numbers, booleans or null",
    ]
    error = fetchhive_requests.refuse(found, body)
    assert isinstance(error, ValidationFailed) and error.details == [str(p) for p in found]
    assert error.message == "invalid request: " + "; ".join(error.details)


def test_openai_param_is_the_first_problems_path_and_the_message_names_all() -> None:
    body = {"model": "fast@", "messages": [{"role": "robot"}], "temperature": 9, "n": 2}
    found = refused(openai_requests.CHAT_BODY, body)
    assert [p.path for p in found] == ["model", "messages[0].role", "n", "temperature"]
    error = openai_requests.refuse(found, body)
    assert isinstance(error, WireError) and error.param == "model"
    assert all(p.path in error.message for p in found)
    assert "got 'robot'" in error.message and "got 9" in error.message


def test_a_check_across_fields_is_reported_with_the_fields_own_problems() -> None:
    body = {"inputs": "x", "release_tag": 1}
    found = refused(vellum_requests.EXECUTE_BODY, body)
    assert [str(p) for p in found] == [
        "give exactly one of prompt_deployment_id and prompt_deployment_name",
        "release_tag: expected a string; got 1",
        "inputs: expected an array; got 'x'",
    ]
    tokens = {"model": "m", "messages": [], "max_tokens": 5, "max_completion_tokens": 6}
    (conflict,) = refused(openai_requests.CHAT_BODY, tokens)
    assert conflict.path == "max_completion_tokens" and "max_tokens" in conflict.message


def test_a_problem_inside_an_input_names_the_input() -> None:
    body = {
        "prompt_deployment_name": "d",
        "inputs": [{"name": "history", "type": "CHAT_HISTORY", "value": [{"role": "FUNCTION", "text": "1"}]}],
    }
    error = vellum_requests.refuse(refused(vellum_requests.EXECUTE_BODY, body), body)
    assert error.message == (
        "invalid request: inputs[0].value[0].source (input 'history'): required in a FUNCTION message: "
        "the id of the function call it answers (type CHAT_HISTORY)"
    )


def test_the_body_itself_and_a_union_without_a_fitting_shape() -> None:
    (whole,) = refused(openai_requests.RUN_BODY, [1])
    assert whole.loc == () and str(whole) == "the request body must be a JSON object; got an array"
    (shape,) = refused(
        openai_requests.CHAT_BODY, {"model": "m", "messages": [], "response_format": {"type": 1}}
    )
    assert str(shape) == "response_format.type: expected 'text', 'json_object' or 'json_schema'; got 1"


@pytest.mark.parametrize(
    ("value", "said"),
    [(None, "null"), (True, "true"), (3, "3"), ("hi", "'hi'"), ("x" * 61, "a string of 61 characters"),
     ([], "an empty array"), ([1], "an array"), ({}, "an empty object"), ({"a": 1}, "an object")],
)  # fmt: skip
def test_what_was_got_is_shown_by_value_or_kind(value: Any, said: str) -> None:
    assert described(value) == said


def test_valid_bodies_map_to_the_neutral_shapes() -> None:
    chat = openai_requests.CHAT_BODY.validate_python(
        {
            "model": "fast@beta",
            "messages": [
                {
                    "role": "developer",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "tool", "content": "1", "tool_call_id": "c"},
            ],
            "max_completion_tokens": 7,
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "response_format": {"type": "json_schema", "json_schema": {"schema": {}}},
            "stream_options": {"include_usage": True},
            "unknown": "ignored",
        }
    )
    fields = openai_requests.chat_fields(chat)
    assert (fields["deployment"], fields["variant"], fields["params"]) == ("fast", "beta", {"max_tokens": 7})
    assert fields["messages"] == [
        {"role": "system", "content": "ab"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "name": "f", "arguments": "{}"}]},
        {"role": "tool", "content": "1", "tool_call_id": "c"},
    ]
    assert fields["tool_choice"] == {"name": "f"} and fields["include_usage"] is True
    assert fields["response_format"] == {"type": "json_schema", "name": "response", "schema": {}}

    body = vellum_requests.EXECUTE_BODY.validate_python(
        {
            "prompt_deployment_id": "0" * 32,
            "inputs": [{"name": "t", "type": "STRING", "value": "x"}],
            "expand_meta": {"usage": True, "cost": None},
            "raw_overrides": {"headers": {"a": None}},
        }
    )
    parsed = vellum_requests.execution(body)
    assert parsed.deployment_id == "0" * 32 and parsed.release_tag == "LATEST"
    assert parsed.inputs == {"t": "x"} and parsed.expand_meta == frozenset({"usage"})
    assert parsed.raw_overrides == {"headers": {}} and parsed.messages is None
