"""The Jinja2 sandbox's own limits, before any worker process: format widths are bounded, `lipsum`
is gone, and saving a version (which compiles it) never runs its filters, which still work when
a template renders."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from promptdeck.domain.prompts import parse_spec
from promptdeck.domain.templating import MAX_WIDTH, TemplateProblem, jinja_variables, render_jinja


@pytest.mark.parametrize(
    "source",
    [
        '{{ "%0999999999d" % 1 }}',
        '{{ "%.999999999f" % 1.5 }}',
        '{{ "%*d" % (999999999, 1) }}',
        '{{ "%(n)0999999999d" % {"n": 1} }}',
        '{{ "%0999999999d" | format(1) }}',
        '{{ "{:>999999999}".format(1) }}',
        '{{ "{:>{w}}".format(1, w=999999999) }}',
        '{{ "{0:>{1}}".format(1, 999999999) }}',
        '{{ "{a:>999999999}".format_map({"a": 1}) }}',
        '{{ ("{:>999999999}" | safe).format(1) }}',
        '{{ "{:>' + "9" * 5000 + '}".format(1) }}',
    ],
)
def test_a_huge_format_width_or_precision_is_refused_before_it_is_built(source: str) -> None:
    with pytest.raises(
        TemplateProblem, match=rf"messages\[2\]: line 1: format width .* larger than {MAX_WIDTH}"
    ):
        render_jinja(source, {}, 2)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('{{ "%5d|%-3s|%%|%.2f" % (7, "a", 3.14159) }}', "    7|a  |%|3.14"),
        ('{{ "%*d" % (4, 10 ** 12) }}', "1000000000000"),
        ('{{ "%(n)03d" % {"n": 7} }}', "007"),
        ('{{ "%s items" | format(3) }}', "3 items"),
        ('{{ "{:>6}|{:.3f}|{:,}".format("x", 2.5, 10 ** 6) }}', "     x|2.500|1,000,000"),
        ('{{ "{a:>{w}}".format_map({"a": 1, "w": 3}) }}', "  1"),
        ("{{ 7 % 3 }}", "1"),
    ],
)
def test_ordinary_formatting_still_works(source: str, expected: str) -> None:
    assert render_jinja(source, {}, 0) == expected


def test_lipsum_is_not_in_the_sandbox() -> None:
    with pytest.raises(TemplateProblem, match="'lipsum' is undefined"):
        render_jinja("{{ lipsum(n=100000) }}", {}, 0)
    assert jinja_variables(["{{ lipsum(n=3) }}"]) == ["lipsum"]  # a name like any other input


def test_saving_a_version_runs_none_of_its_filters() -> None:
    """Jinja2 calls a filter with constant arguments while compiling; a version is compiled when
    it is saved, in the server, where `center(100000000)` built a 100 MB string."""
    tracemalloc.start()
    try:
        parse_spec(
            {
                "model": "local/m",
                "template_syntax": "jinja2",
                "messages": [{"role": "user", "content": '{{ "x" | center(100000000) }}{{ n }}'}],
            }
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000, peak


VALUES: dict[str, Any] = {
    "items": ["b", "a"],
    "people": [{"name": "Ada", "age": 36}, {"name": "Al", "age": 7}],
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('{{ "x" | center(5) }}', "  x  "),
        ("{{ items | sort | join(', ') | upper }}", "A, B"),
        ("{{ items | map('upper') | list }}", "['B', 'A']"),
        ("{{ people | selectattr('age', 'gt', 10) | map(attribute='name') | join }}", "Ada"),
        ("{{ people | sum(attribute='age') }}", "43"),
        ("{{ people | groupby('age') | length }}", "2"),
        ("{{ 'a b c d' | truncate(5, leeway=0) }}", "a..."),
        ("{{ 'one two' | wordwrap(3) }}", "one\ntwo"),
        ("{{ '<b>' | e }}|{{ {'k': 1} | tojson }}|{{ 3.14159 | round(2) }}", '&lt;b&gt;|{"k": 1}|3.14'),
        (
            "{{ 'a-b' | replace('-', '+') }}{{ items | first }}{{ people | map(attribute='age') | max }}",
            "a+bb36",
        ),
    ],
)
def test_filters_still_work_when_a_template_renders(source: str, expected: str) -> None:
    assert render_jinja(source, VALUES, 0, seconds=None) == expected
