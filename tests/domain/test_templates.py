"""Jinja2 templates: sandboxed, strict about undefined names, limited in time and size, with
errors naming the message index, the line and the variable."""

from __future__ import annotations

import time
from typing import Any

import pytest

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.inputs import render_messages, resolve_inputs
from promptdeck.domain.prompts import InputSpec, Message, PromptSpec, parse_spec
from promptdeck.domain.templating import TemplateProblem, render_jinja

LOOP = (
    "Items:\n{% for item in order['items'] %}- {{ item.sku | upper }}"
    "{% if not loop.last %}\n{% endif %}{% endfor %}"
)


def jinja(*contents: str, inputs: dict[str, Any] | None = None) -> PromptSpec:
    return parse_spec(
        {
            "model": "local/m",
            "template_syntax": "jinja2",
            "messages": [{"role": "user", "content": c} for c in contents],
            "inputs": inputs or {},
        }
    )


def render_error(s: PromptSpec, given: dict[str, Any]) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        render_messages(s, resolve_inputs(s, given))
    return caught.value


def test_loops_conditionals_and_filters_render() -> None:
    s = jinja(LOOP, inputs={"order": "json"})
    values = resolve_inputs(s, {"order": {"items": [{"sku": "a-1"}, {"sku": "b-2"}]}})
    assert render_messages(s, values) == [Message("user", "Items:\n- A-1\n- B-2")]


def test_the_syntax_is_kept_in_the_hash_only_when_not_the_default() -> None:
    default = parse_spec({"model": "local/m", "messages": [{"role": "user", "content": "{{ a }}"}]})
    explicit = parse_spec(
        {
            "model": "local/m",
            "template_syntax": "default",
            "messages": [{"role": "user", "content": "{{ a }}"}],
        }
    )
    assert "template_syntax" not in default.to_dict() and default.content_hash == explicit.content_hash
    assert jinja("{{ a }}").to_dict()["template_syntax"] == "jinja2"
    assert jinja("{{ a }}").content_hash != default.content_hash


def test_variables_read_by_a_jinja2_template_are_declared() -> None:
    s = jinja("{% for x in items %}{{ x }}{{ sep }}{% endfor %}{% set local = 1 %}{{ local }}")
    assert s.inputs == {"items": InputSpec(type="json"), "sep": InputSpec(type="json")}


def test_an_unknown_syntax_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="template_syntax: expected one of default, jinja2"):
        parse_spec(
            {
                "model": "local/m",
                "template_syntax": "mustache",
                "messages": [{"role": "user", "content": "x"}],
            }
        )


def test_syntax_errors_are_refused_at_creation_naming_message_and_line() -> None:
    with pytest.raises(ValidationFailed) as caught:
        jinja("fine {{ a }}", "one\ntwo\n{% for x in %}{% endfor %}", "{{ b ")
    problems = caught.value.details
    assert len(problems) == 2
    assert problems[0].startswith("messages[1].content: line 3: ")
    assert problems[1].startswith("messages[2].content: line 1: ")


def test_an_undefined_variable_names_message_line_and_variable() -> None:
    s = jinja("ok", "first\n{{ order.customer.name }}", inputs={"order": "json"})
    error = render_error(s, {"order": {"id": 1}})
    assert error.message.startswith("template error: messages[1]: line 2: ")
    assert "customer" in error.message
    assert error.details == {"template": [error.message.removeprefix("template error: ")]}


def test_every_message_error_is_reported_at_once() -> None:
    s = jinja("{{ a.x }}", "{{ b.y }}", inputs={"a": "json", "b": "json"})
    assert len(render_error(s, {"a": {}, "b": {}}).details["template"]) == 2


def test_a_runaway_loop_is_stopped_within_the_time_limit() -> None:
    source = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(TemplateProblem, match=r"messages\[3\]: line 1: took longer than 0.2 s"):
        render_jinja(source, {}, 3, seconds=0.2)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(100000) %}{% for j in range(100) %}xxxxxxxx{% endfor %}{% endfor %}",
        "{{ 'x' * 100000000 }}",
    ],
)
def test_output_over_the_size_limit_is_refused(source: str) -> None:
    with pytest.raises(TemplateProblem, match="output larger than"):
        render_jinja(source, {}, 0, limit=1000)


def test_the_sandbox_refuses_unsafe_attribute_access() -> None:
    with pytest.raises(TemplateProblem, match=r"messages\[0\]"):
        render_jinja("{{ x.__class__.__mro__[1].__subclasses__() }}", {"x": ""}, 0)


def test_a_trace_function_already_set_is_restored() -> None:
    import sys

    def tracer(*_: Any) -> None:
        return None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        assert render_jinja("{{ a }}", {"a": 1}, 0) == "1"
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(previous)


def test_chat_history_slots_work_in_jinja2_templates() -> None:
    s = jinja("{{ history }}", "{{ q }}", inputs={"history": "chat_history", "q": "string"})
    values = resolve_inputs(s, {"history": [{"role": "assistant", "content": "{{ raw }}"}], "q": "?"})
    assert render_messages(s, values) == [Message("assistant", "{{ raw }}"), Message("user", "?")]
