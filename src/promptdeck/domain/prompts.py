"""What a prompt version holds, and the rules it must follow.

A `PromptSpec` is the content of one immutable version. Two specs with the
same content have the same `content_hash`, which is how `push` knows whether
a file changed anything.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from promptdeck.domain.content_parts import (
    Content,
    TextPart,
    bound_inputs,
    content_data,
    parse_parts,
    texts_of,
)
from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.input_types import schema_error, value_problems
from promptdeck.domain.templating import (
    DEFAULT_SYNTAX,
    JINJA2,
    TEMPLATE_SYNTAXES,
    jinja_problems,
    jinja_variables,
    paths_in,
    variables_in,
    whole_placeholder,
)

ROLES = ("system", "user", "assistant")
INPUT_TYPES = ("string", "number", "integer", "boolean", "json", "chat_history", "image", "document")
EXTRA_INPUTS = ("allow", "forbid")
UNDECLARED_VARIABLES = ("declare", "refuse")
SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")

# Parameter name -> (accepted Python types, lower bound, upper bound)
PARAMETERS: dict[str, tuple[tuple[type, ...], float | None, float | None]] = {
    "temperature": ((int, float), 0.0, 2.0),
    "top_p": ((int, float), 0.0, 1.0),
    "max_tokens": ((int,), 1, 1_000_000),
    "seed": ((int,), None, None),
    "presence_penalty": ((int, float), -2.0, 2.0),
    "frequency_penalty": ((int, float), -2.0, 2.0),
    "stop": ((str, list), None, None),
    "reasoning_effort": ((str,), None, None),
}
REASONING_EFFORTS = ("low", "medium", "high")
OPTIONAL_PARTS = ("tools", "tool_choice", "response_format")
TOOL_CHOICES = ("auto", "none", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: Content  # a template, or parts (domain/content_parts.py)


@dataclass(frozen=True, slots=True)
class InputSpec:
    type: str = "string"
    required: bool = True
    default: Any = None
    description: str = ""
    schema: dict[str, Any] | None = None  # JSON Schema a `json` input's value must satisfy

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "required": self.required}
        if self.default is not None:
            out["default"] = self.default
        if self.description:
            out["description"] = self.description
        if self.schema is not None:
            out["schema"] = self.schema
        return out


@dataclass(frozen=True, slots=True)
class PromptSpec:
    model: str
    messages: tuple[Message, ...]
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    template_syntax: str = DEFAULT_SYNTAX
    extra_inputs: str = "allow"

    def to_dict(self) -> dict[str, Any]:
        """Plain data; the optional parts appear only when set (or, for `template_syntax` and
        `extra_inputs`, when not the default), so older versions keep their hash."""
        data: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": content_data(m.content)} for m in self.messages],
            "params": dict(self.params),
            "inputs": {name: spec.to_dict() for name, spec in self.inputs.items()},
        }
        for name in OPTIONAL_PARTS:
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        if self.template_syntax != DEFAULT_SYNTAX:
            data["template_syntax"] = self.template_syntax
        if self.extra_inputs != "allow":
            data["extra_inputs"] = self.extra_inputs
        return data

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)).hexdigest()

    @property
    def provider(self) -> str:
        return self.model.split("/", 1)[0]


def check_slug(value: Any, what: str) -> str:
    if not isinstance(value, str) or not SLUG.match(value):
        raise ValidationFailed(
            f"{what} must be 1-100 characters of lower-case letters, digits, '-', '_' or '.', "
            f"starting with a letter or digit; got {value!r}"
        )
    return value


def parse_spec(raw: Any, undeclared: str | None = "declare") -> PromptSpec:
    """Build a spec from plain data (API body or prompt file), listing every problem at once.

    Variables used in the messages but not declared become required inputs (strings; `json`
    when read with a dotted path or from a Jinja2 template) when `undeclared` is "declare",
    and are refused when it is "refuse".
    """
    if not isinstance(raw, dict):
        raise ValidationFailed("a prompt version must be an object")
    problems: list[str] = []

    model = raw.get("model")
    if not isinstance(model, str) or "/" not in model or model.startswith("/") or model.endswith("/"):
        problems.append(
            f"model: expected 'provider/model', e.g. 'local/smollm2-135m-instruct'; got {model!r}"
        )
        model = ""

    messages: list[Message] = []
    raw_messages = raw.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        problems.append("messages: expected a non-empty list of {role, content}")
    else:
        for i, item in enumerate(raw_messages):
            if not isinstance(item, dict):
                problems.append(f"messages[{i}]: expected an object with role and content")
                continue
            role, content = item.get("role"), item.get("content")
            if role not in ROLES:
                problems.append(f"messages[{i}].role: expected one of {', '.join(ROLES)}; got {role!r}")
            if not isinstance(content, str):
                content, errors = parse_parts(content, f"messages[{i}].content")
                problems.extend(errors)
                content = None if errors else content
            if role in ROLES and content is not None:
                messages.append(Message(role, content))

    params = raw.get("params") or {}
    if not isinstance(params, dict):
        problems.append("params: expected an object")
        params = {}
    problems.extend(param_problems(params))

    inputs: dict[str, InputSpec] = {}
    raw_inputs = raw.get("inputs") or {}
    if not isinstance(raw_inputs, dict):
        problems.append("inputs: expected an object of name -> {type, required, default, description}")
        raw_inputs = {}
    for name, decl in raw_inputs.items():
        spec, errors = _parse_input(name, decl)
        problems.extend(errors)
        if spec is not None:
            inputs[name] = spec

    tools = _tools(raw.get("tools"), problems)
    tool_choice = _tool_choice(raw.get("tool_choice"), tools, problems)
    response_format = _response_format(raw.get("response_format"), problems)

    syntax = raw.get("template_syntax") or DEFAULT_SYNTAX
    if syntax not in TEMPLATE_SYNTAXES:
        problems.append(f"template_syntax: expected one of {', '.join(TEMPLATE_SYNTAXES)}; got {syntax!r}")
        syntax = DEFAULT_SYNTAX
    extra = raw.get("extra_inputs") or "allow"
    if extra not in EXTRA_INPUTS:
        problems.append(f"extra_inputs: expected one of {', '.join(EXTRA_INPUTS)}; got {extra!r}")
    texts = [text for m in messages for text in texts_of(m.content)]
    syntax_errors = _jinja_problems(messages) if syntax == JINJA2 else []
    problems.extend(syntax_errors)
    jinja_broken = bool(syntax_errors)
    used: dict[str, str] = {}  # name -> the type it is declared with when undeclared
    if syntax == JINJA2 and not jinja_broken:
        used = dict.fromkeys(jinja_variables(texts), "json")
    elif syntax == DEFAULT_SYNTAX:
        dotted = {steps[0] for steps in paths_in(texts)}
        used = {name: "json" if name in dotted else "string" for name in variables_in(texts)}
    for m in messages:
        if isinstance(m.content, str) and (slot := whole_placeholder(m.content)) is not None:
            used.setdefault(slot, "string")
    bound = bound_inputs(m.content for m in messages)
    used.update(bound)
    problems.extend(
        f"inputs.{name}.type: bound to the source of {kind} parts, so expected {kind}; "
        f"got {inputs[name].type}"
        for name, kind in bound.items()
        if name in inputs and inputs[name].type != kind
    )
    undeclared_names = [name for name in used if name not in inputs]
    if undeclared_names and undeclared == "refuse":
        problems.extend(
            f"inputs.{name}: used in the messages but not declared (this prompt refuses undeclared variables)"
            for name in undeclared_names
        )

    if problems:
        raise ValidationFailed("invalid prompt version: " + "; ".join(problems), details=problems)

    for name in undeclared_names:
        inputs[name] = InputSpec(type=used[name])
    return PromptSpec(
        model=model,
        messages=tuple(messages),
        params=dict(params),
        inputs=inputs,
        tools=tools,
        tool_choice=tool_choice,
        response_format=response_format,
        template_syntax=syntax,
        extra_inputs=extra,
    )


def _jinja_problems(messages: list[Message]) -> list[str]:
    """Jinja2 syntax errors, each naming the message (and the part) it is in."""
    problems = []
    for i, message in enumerate(messages):
        if isinstance(message.content, str):
            found = [(f"messages[{i}].content", jinja_problems([message.content]))]
        else:
            found = [
                (f"messages[{i}].content[{j}].text", jinja_problems([part.text]))
                for j, part in enumerate(message.content)
                if isinstance(part, TextPart)
            ]
        problems += [where + problem.split(".content", 1)[1] for where, errors in found for problem in errors]
    return problems


def _tools(raw: Any, problems: list[str]) -> list[dict[str, Any]] | None:
    """JSON-Schema function definitions: `[{name, description?, parameters?}]`."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        problems.append("tools: expected a list of {name, description, parameters}")
        return None
    tools = []
    for i, tool in enumerate(raw):
        name = tool.get("name") if isinstance(tool, dict) else None
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_-]{1,64}$", name):
            problems.append(f"tools[{i}].name: expected 1-64 letters, digits, '_' or '-'")
            continue
        parameters = tool.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            problems.append(f"tools[{i}].parameters: expected a JSON Schema object")
            continue
        description = tool.get("description") or ""
        tools.append({"name": name, "description": str(description), "parameters": parameters})
    return tools


def _tool_choice(
    raw: Any, tools: list[dict[str, Any]] | None, problems: list[str]
) -> str | dict[str, Any] | None:
    if raw is None:
        return None
    names = [t["name"] for t in tools or []]
    if raw in TOOL_CHOICES:
        return str(raw)
    if isinstance(raw, dict) and raw.get("name") in names:
        return {"name": raw["name"]}
    problems.append(f"tool_choice: expected one of {', '.join(TOOL_CHOICES)} or {{name}} of a declared tool")
    return None


def _response_format(raw: Any, problems: list[str]) -> dict[str, Any] | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind not in RESPONSE_FORMATS:
        problems.append(f"response_format.type: expected one of {', '.join(RESPONSE_FORMATS)}")
        return None
    if kind != "json_schema":
        return {"type": kind}
    schema = raw.get("schema")
    if not isinstance(schema, dict):
        problems.append("response_format.schema: expected a JSON Schema object")
        return None
    out: dict[str, Any] = {"type": kind, "name": str(raw.get("name") or "response"), "schema": schema}
    if isinstance(raw.get("strict"), bool):
        out["strict"] = raw["strict"]
    return out


def param_problems(params: dict[str, Any]) -> list[str]:
    """Every problem of a set of generation parameters (a version's, or one call's overrides)."""
    return [problem for name, value in params.items() for problem in _check_param(name, value)]


def _check_param(name: str, value: Any) -> list[str]:
    rule = PARAMETERS.get(name)
    if rule is None:
        return [f"params.{name}: unknown parameter (known: {', '.join(PARAMETERS)})"]
    types, low, high = rule
    if isinstance(value, bool) or not isinstance(value, types):
        return [f"params.{name}: expected {' or '.join(t.__name__ for t in types)}; got {value!r}"]
    if name == "stop" and isinstance(value, list) and not all(isinstance(s, str) for s in value):
        return ["params.stop: expected a string or a list of strings"]
    if name == "reasoning_effort" and value not in REASONING_EFFORTS:
        return [f"params.reasoning_effort: expected one of {', '.join(REASONING_EFFORTS)}; got {value!r}"]
    if isinstance(value, float) and not math.isfinite(value):  # NaN passes every bound check
        return [f"params.{name}: expected a finite number; got {value}"]
    if isinstance(value, int | float) and (
        (low is not None and value < low) or (high is not None and value > high)
    ):
        return [f"params.{name}: must be between {low} and {high}; got {value}"]
    return []


def _parse_input(name: Any, decl: Any) -> tuple[InputSpec | None, list[str]]:
    if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
        return None, [f"inputs: {name!r} is not a valid variable name"]
    if decl is None:
        return InputSpec(), []
    if isinstance(decl, str):
        decl = {"type": decl}
    if not isinstance(decl, dict):
        return None, [f"inputs.{name}: expected an object with type, required, default, description"]
    kind = decl.get("type", "string")
    if kind not in INPUT_TYPES:
        return None, [f"inputs.{name}.type: expected one of {', '.join(INPUT_TYPES)}; got {kind!r}"]
    default = decl.get("default")
    required = decl.get("required", default is None)
    if not isinstance(required, bool):
        return None, [f"inputs.{name}.required: expected true or false"]
    description = decl.get("description", "") or ""
    if not isinstance(description, str):
        return None, [f"inputs.{name}.description: expected a string"]
    schema = decl.get("schema")
    if schema is not None:
        if kind != "json":
            return None, [f"inputs.{name}.schema: only a json input takes a schema"]
        if not isinstance(schema, dict):
            return None, [f"inputs.{name}.schema: expected a JSON Schema object"]
        if error := schema_error(schema):
            return None, [f"inputs.{name}.schema: not a valid JSON Schema: {error}"]
    spec = InputSpec(type=kind, required=required, default=default, description=description, schema=schema)
    if default is not None:
        errors = [f"inputs.{name}.default: {p}" for p in value_problems(spec.type, spec.schema, default)]
        if errors:
            return None, errors
    return spec, []
