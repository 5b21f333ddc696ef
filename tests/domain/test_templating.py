"""`{{ name }}` placeholders: finding variables and rendering values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptdeck.domain.templating import render, variables_in

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
WHITESPACE = st.text(alphabet=" \t\n\r\f\v\u00a0\u2003", max_size=6)
# What a JSON body can carry: orjson never parses an integer beyond 64 bits, nor NaN or infinity.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.mark.parametrize(
    "template",
    ["{{name}}", "{{ name }}", "{{   name\t}}", "{{\nname\n}}"],
)
def test_placeholders_allow_whitespace(template: str) -> None:
    assert render(template, {"name": "Ada"}) == "Ada"
    assert variables_in([template]) == ["name"]


def test_unknown_names_are_left_as_they_are() -> None:
    assert render("Hi {{ name }}, {{ missing }}!", {"name": "Ada"}) == "Hi Ada, {{ missing }}!"


def test_text_that_is_not_a_placeholder_is_untouched() -> None:
    template = "{{ 1abc }} { name } {{ na me }} {{}} {{{ name }}}"
    assert variables_in([template]) == ["name"]
    assert render(template, {"name": "x"}) == "{{ 1abc }} { name } {{ na me }} {{}} {x}"


def test_every_occurrence_is_replaced() -> None:
    assert render("{{a}}-{{ a }}-{{a }}", {"a": "z"}) == "z-z-z"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (["a", 1, None], '["a",1,null]'),
        ({"k": [1, 2], "n": {"x": True}}, '{"k":[1,2],"n":{"x":true}}'),
        (3, "3"),
        (2.5, "2.5"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        ("", ""),
        ('héllo "quoted"', 'héllo "quoted"'),
    ],
)
def test_non_string_values_render_as_compact_json(value: Any, text: str) -> None:
    assert render("<{{ v }}>", {"v": value}) == f"<{text}>"


def test_rendered_values_are_not_rendered_again() -> None:
    """A value that looks like a placeholder reaches the model as it was sent."""
    assert render("{{ a }} {{ b }}", {"a": "{{ b }}", "b": "x"}) == "{{ b }} x"


def test_variables_in_order_of_first_appearance_across_templates() -> None:
    templates = ["{{ b }} {{a}} {{ b }}", "", "{{c}} {{ a }} {{d}}"]
    assert variables_in(templates) == ["b", "a", "c", "d"]
    assert variables_in([]) == []
    assert variables_in(["no placeholders"]) == []


@given(template=st.text(), values=st.dictionaries(NAMES, JSON_VALUES, max_size=4))
def test_render_never_raises(template: str, values: dict[str, Any]) -> None:
    assert isinstance(render(template, values), str)


@given(value=JSON_VALUES, before=WHITESPACE, after=WHITESPACE)
def test_render_round_trips_values(value: Any, before: str, after: str) -> None:
    rendered = render("{{" + before + "v" + after + "}}", {"v": value})
    if isinstance(value, str):
        assert rendered == value
    else:
        assert json.loads(rendered) == value


@given(name=NAMES, before=WHITESPACE, after=WHITESPACE, text=st.text())
def test_placeholders_with_any_whitespace(name: str, before: str, after: str, text: str) -> None:
    template = "{{" + before + name + after + "}}"
    assert variables_in([template]) == [name]
    assert render(template, {name: text}) == text
    assert render(template, {}) == template


@given(names=st.lists(NAMES, max_size=8))
def test_variables_in_is_deduplicated_first_appearance(names: list[str]) -> None:
    template = " ".join("{{ " + n + " }}" for n in names)
    assert variables_in([template]) == list(dict.fromkeys(names))
