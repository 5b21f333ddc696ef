"""Templates: the default `{{ name }}` syntax (with dotted access into JSON inputs,
`{{ order.items.0.sku }}`) and, per version, Jinja2 in a sandbox with limits.

Non-string values render as compact JSON, so a list or an object reaches the
model the same way whichever client sent it.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache, update_wrapper
from types import FrameType, TracebackType
from typing import Any

import orjson
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, meta, pass_context
from jinja2.filters import do_format
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from markupsafe import Markup

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}")
WHOLE_PLACEHOLDER = re.compile(r"\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\s*")

DEFAULT_SYNTAX = "default"
JINJA2 = "jinja2"
TEMPLATE_SYNTAXES = (DEFAULT_SYNTAX, JINJA2)

RENDER_SECONDS = 1.0  # a Jinja2 message that takes longer is stopped
OUTPUT_LIMIT = 256 * 1024  # characters one rendered Jinja2 message may hold
MAX_WIDTH = OUTPUT_LIMIT  # a format width or precision the output could not hold is refused
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


_PRINTF_SPEC = re.compile(r"%(\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)", re.DOTALL)
_DIGITS = re.compile(r"\d+")


def _check_width(value: Any) -> None:
    if isinstance(value, int) and abs(value) > MAX_WIDTH:
        raise TemplateProblem(f"format width or precision {value} is larger than {MAX_WIDTH}")


def _check_spec_digits(spec: str) -> None:
    """Every number written in a format spec, checked without `int()` of a thousand digits."""
    for digits in _DIGITS.findall(spec):
        digits = digits.lstrip("0")
        if len(digits) > len(str(MAX_WIDTH)):
            shown = digits if len(digits) <= 12 else digits[:12] + "…"
            raise TemplateProblem(f"format width or precision {shown} is larger than {MAX_WIDTH}")
        _check_width(int(digits or "0"))


def _check_printf(template: str, args: Any) -> None:
    """`%` formatting builds its result in C, where no time check reaches: refuse a huge width or
    precision up front, written (`%0999999999d`) or taken from the arguments (`%*d`)."""
    positional = list(args) if isinstance(args, tuple) else [args]
    taken = 0
    for match in _PRINTF_SPEC.finditer(template):
        key, width, precision, kind = match.groups()
        for part in (width, precision):
            if part == "*":
                _check_width(positional[taken] if taken < len(positional) else None)
                taken += 1
            elif part:
                _check_spec_digits(part)
        taken += key is None and kind != "%"


class _Formatter(SandboxedFormatter):
    """The sandbox's `str.format`, with each field's width and precision bounded (`{:>999999999}`)."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        _check_spec_digits(format_spec)
        return super().format_field(value, format_spec)


class _EscapeFormatter(_Formatter, SandboxedEscapeFormatter):
    pass


def _bounded_format(value: Any, *args: Any, **kwargs: Any) -> str:
    """The `format` filter, with `%` widths bounded."""
    _check_printf(str(value), kwargs or args)
    return do_format(value, *args, **kwargs)


class _Environment(SandboxedEnvironment):
    """The sandbox, with `*`, `**` and `%` refused when they would build something huge."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 1000:
            raise TemplateProblem(f"exponent {right} is too large")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > OUTPUT_LIMIT:
                    raise TemplateProblem(f"output larger than {OUTPUT_LIMIT} characters")
        if operator == "%" and isinstance(left, str):
            _check_printf(left, right)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """The sandbox's `str.format` / `format_map` wrapper, with `_Formatter` in it."""
        if super().wrap_str_format(value) is None:
            return None
        source: str = value.__self__
        formatter: _Formatter = (
            _EscapeFormatter(self, escape=source.escape) if isinstance(source, Markup) else _Formatter(self)
        )
        is_format_map = value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument and no keywords")
                return type(source)(formatter.vformat(source, (), args[0]))
            return type(source)(formatter.vformat(source, args, kwargs))

        return update_wrapper(bounded, value)


def _at_render_only(function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that runs when a template renders, never while one is parsed: Jinja2 otherwise
    calls a filter with constant arguments at compile time, and `jinja_variables` compiles inside
    the server when a version is saved (`{{ "x"|center(300000000) }}` took 1.8 s and 880 MB there).
    A filter that takes the context is never called early, so each one takes it."""
    kind = getattr(getattr(function, "jinja_pass_arg", None), "name", None)
    if kind == "context":
        return function

    @pass_context
    def at_render(context: Context, *args: Any, **kwargs: Any) -> Any:
        if kind == "eval_context":
            return function(context.eval_ctx, *args, **kwargs)
        if kind == "environment":
            return function(context.environment, *args, **kwargs)
        return function(*args, **kwargs)

    return at_render


_ENV = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
del _ENV.globals["lipsum"]  # builds text in plain Python, out of reach of the time check; no prompt needs it
_ENV.filters["format"] = _bounded_format
_ENV.filters = {name: _at_render_only(function) for name, function in _ENV.filters.items()}


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
    seconds: float | None = RENDER_SECONDS,
    limit: int = OUTPUT_LIMIT,
) -> str:
    """Render one message in the sandbox, within a time and an output-size limit.

    Raises `TemplateProblem` naming the message index, the template line and, for an undefined
    name, the variable. The time limit is a trace function, which stops template code only (what
    runs in C or in library code is out of its reach) and makes a render several times slower.
    The server's render workers (`engine/template_renders.py`) pass `seconds=None` and keep time
    themselves, with an alarm that raises a `TemplateProblem` here and a kill after it."""
    previous = sys.gettrace()
    if seconds is not None:
        sys.settrace(_Deadline(seconds))
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
    except MemoryError:  # only where memory is limited: in a render worker (engine/template_renders.py)
        raise TemplateProblem(f"messages[{index}]: needed more memory than a render may use") from None
    except (TemplateError, RecursionError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise _located(exc, index, exc.__traceback__) from None
    finally:
        if seconds is not None:
            sys.settrace(previous)
    return "".join(parts)


def _located(exc: BaseException, index: int, tb: TracebackType | None) -> TemplateProblem:
    line = getattr(exc, "lineno", None) or _template_line(tb)
    where = f"messages[{index}]" + (f": line {line}" if line else "")
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return TemplateProblem(f"{where}: {text}")
