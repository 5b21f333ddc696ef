"""Templates: the default `{{ name }}` syntax (with dotted access into JSON inputs,
`{{ order.items.0.sku }}`) and, per version, Jinja2 in a sandbox with limits.

Non-string values render as compact JSON, so a list or an object reaches the
model the same way whichever client sent it.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from types import FrameType, TracebackType
from typing import Any

import orjson
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}")
WHOLE_PLACEHOLDER = re.compile(r"\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\s*")

DEFAULT_SYNTAX = "default"
JINJA2 = "jinja2"
TEMPLATE_SYNTAXES = (DEFAULT_SYNTAX, JINJA2)

RENDER_SECONDS = 1.0  # a Jinja2 message that takes longer is stopped
OUTPUT_LIMIT = 256 * 1024  # characters one rendered Jinja2 message may hold
_MISSING = object()


class TemplateProblem(Exception):
    """A template that cannot be rendered; the message names the message index, line and variable."""


def variables_in(templates: Iterable[str]) -> list[str]:
    """Input names (the first step of each path) in order of first appearance."""
    seen: dict[str, None] = {}
    for template in templates:
        for match in PLACEHOLDER.finditer(template):
            seen.setdefault(match.group(1).split(".", 1)[0], None)
    return list(seen)


def paths_in(templates: Iterable[str]) -> list[tuple[str, ...]]:
    """Every dotted path (`order.items.0`) used, as its steps, in order of first appearance."""
    seen: dict[tuple[str, ...], None] = {}
    for template in templates:
        for match in PLACEHOLDER.finditer(template):
            steps = tuple(match.group(1).split("."))
            if len(steps) > 1:
                seen.setdefault(steps, None)
    return list(seen)


def whole_placeholder(content: str) -> str | None:
    """The name when a message's content is exactly `{{ name }}` (a chat history slot)."""
    match = WHOLE_PLACEHOLDER.fullmatch(content)
    return match.group(1) if match else None


def as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def follow(value: Any, steps: Iterable[str]) -> Any:
    """The value at a path of keys and list indexes, or `_MISSING`."""
    for step in steps:
        if isinstance(value, Mapping) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return _MISSING
    return value


def path_exists(value: Any, steps: Iterable[str]) -> bool:
    return follow(value, steps) is not _MISSING


def render(template: str, values: Mapping[str, Any]) -> str:
    """Replace every placeholder whose input is in `values`; leave others as they are."""

    def substitute(match: re.Match[str]) -> str:
        name, *steps = match.group(1).split(".")
        if name not in values:
            return match.group(0)
        found = follow(values[name], steps)
        return match.group(0) if found is _MISSING else as_text(found)

    return PLACEHOLDER.sub(substitute, template)


# ── Jinja2 ────────────────────────────────────────────────────────────────────


class _Environment(SandboxedEnvironment):
    """The sandbox, with `*` and `**` refused when they would build something huge."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 1000:
            raise TemplateProblem(f"exponent {right} is too large")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > OUTPUT_LIMIT:
                    raise TemplateProblem(f"output larger than {OUTPUT_LIMIT} characters")
        return super().call_binop(context, operator, left, right)


_ENV = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def jinja_problems(templates: Iterable[str]) -> list[str]:
    """Syntax errors of Jinja2 message templates, each naming its message and line."""
    problems = []
    for index, template in enumerate(templates):
        try:
            _ENV.parse(template)
        except TemplateSyntaxError as exc:
            problems.append(f"messages[{index}].content: line {exc.lineno}: {exc.message}")
    return problems


def jinja_variables(templates: Iterable[str]) -> list[str]:
    """Names a set of (valid) Jinja2 templates read from the context, in a stable order."""
    seen: dict[str, None] = {}
    for template in templates:
        found = meta.find_undeclared_variables(_ENV.parse(template))
        # keep the order of appearance in the text where possible
        for name in sorted(found, key=lambda n: (template.find(n), n)):
            seen.setdefault(name, None)
    return list(seen)


class _Deadline:
    """A trace function that stops template code (and only it) once time is up."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds
        self.lines = 0

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code.co_filename == "<template>":
            return self._local
        return None

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        self.lines += 1
        if self.lines % 64 == 0 and time.monotonic() > self.deadline:
            raise TemplateProblem(f"took longer than {self.seconds:g} s (a runaway loop?)")
        return self._local


def _template_line(tb: TracebackType | None) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@lru_cache(maxsize=512)
def _compiled(source: str) -> Template:
    return _ENV.from_string(source)


def _chunks(source: str, values: Mapping[str, Any]) -> Iterator[str]:
    return _compiled(source).generate(dict(values))


def render_jinja(
    source: str,
    values: Mapping[str, Any],
    index: int,
    seconds: float = RENDER_SECONDS,
    limit: int = OUTPUT_LIMIT,
) -> str:
    """Render one message in the sandbox, within a time and an output-size limit.

    Raises `TemplateProblem` naming the message index, the template line and, for an undefined
    name, the variable. Stopping on time uses a trace function on this thread, so run it in a
    worker thread to keep an event loop free meanwhile."""
    deadline = _Deadline(seconds)
    previous = sys.gettrace()
    sys.settrace(deadline)
    parts: list[str] = []
    size = 0
    try:
        for chunk in _chunks(source, values):
            size += len(chunk)
            if size > limit:
                raise TemplateProblem(f"output larger than {limit} characters")
            parts.append(chunk)
    except TemplateProblem as exc:
        raise _located(exc, index, exc.__traceback__) from None
    except (TemplateError, RecursionError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise _located(exc, index, exc.__traceback__) from None
    finally:
        sys.settrace(previous)
    return "".join(parts)


def _located(exc: BaseException, index: int, tb: TracebackType | None) -> TemplateProblem:
    line = getattr(exc, "lineno", None) or _template_line(tb)
    where = f"messages[{index}]" + (f": line {line}" if line else "")
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return TemplateProblem(f"{where}: {text}")
