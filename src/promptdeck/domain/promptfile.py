"""Prompt files (prompts as code): YAML in, a checked document out, errors with line numbers."""

from __future__ import annotations

import re
from typing import Any

import yaml

from promptdeck.domain.dataset_files import section_problems
from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.prompts import UNDECLARED_VARIABLES, check_slug, parse_spec

TOP_LEVEL = (
    "prompt",
    "version",
    "name",
    "description",
    "note",
    "model",
    "params",
    "messages",
    "inputs",
    "tools",
    "tool_choice",
    "response_format",
    "template_syntax",
    "extra_inputs",
    "undeclared_variables",
    "deploy",
    "datasets",
)
# A path step is a key (deployment and variant names may hold "-" and start with a digit) or `[n]`.
_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class PromptFileError(ValidationFailed):
    """A prompt file problem; the message starts with `file:line:`."""


def load_prompt_file(text: str, source: str = "<prompt file>") -> dict[str, Any]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise PromptFileError(f"{source}:{line}: not valid YAML: {exc.problem}") from exc
    if not isinstance(data, dict):
        raise PromptFileError(f"{source}:1: a prompt file is a mapping with prompt, model, messages…")
    problems = document_problems(data)
    if problems:
        located = [f"{source}:{_line_of(root, p)}: {p}" for p in problems]
        raise PromptFileError("\n".join(located), details=located)
    return data


def check_document(data: Any) -> dict[str, Any]:
    """The server's check of a pushed document: the same rules, without line numbers."""
    if not isinstance(data, dict):
        raise ValidationFailed("a prompt document is an object with prompt, model, messages…")
    problems = document_problems(data)
    if problems:
        raise ValidationFailed("invalid prompt document: " + "; ".join(problems), details=problems)
    return data


def document_problems(data: dict[str, Any]) -> list[str]:
    """Every problem of a prompt document, each starting with the path it concerns."""
    problems: list[str] = []
    for key in data:
        if key not in TOP_LEVEL:
            problems.append(f"{key}: unknown field (known: {', '.join(TOP_LEVEL)})")
    try:
        check_slug(data.get("prompt"), "prompt")
    except ValidationFailed as exc:
        problems.append(f"prompt: {exc.message}")
    undeclared = data.get("undeclared_variables")
    if undeclared is not None and undeclared not in UNDECLARED_VARIABLES:
        problems.append(
            f"undeclared_variables: expected one of {', '.join(UNDECLARED_VARIABLES)}; got {undeclared!r}"
        )
    try:
        parse_spec(data, undeclared)
    except ValidationFailed as exc:
        problems.extend(exc.details if isinstance(exc.details, list) else [exc.message])
    version = data.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        problems.append(f"version: expected the version number the file was pulled from; got {version!r}")
    problems.extend(_deploy_problems(data.get("deploy")))
    problems.extend(section_problems(data.get("datasets")))
    return problems


def _deploy_problems(deploy: Any) -> list[str]:
    if deploy is None:
        return []
    if not isinstance(deploy, dict):
        return ["deploy: expected deployment name -> {variant: latest or a version number}"]
    problems = []
    for name, variants in deploy.items():
        if not isinstance(variants, dict) or not variants:
            problems.append(f"deploy.{name}: expected {{variant: latest or a version number}}")
            continue
        for variant, target in variants.items():
            if target != "latest" and (isinstance(target, bool) or not isinstance(target, int) or target < 1):
                problems.append(
                    f"deploy.{name}.{variant}: expected 'latest' or a version number; got {target!r}"
                )
    return problems


def _line_of(root: yaml.Node | None, problem: str) -> int:
    """The line of the deepest node named by the path a problem starts with (`messages[1].role: …`)."""
    if root is None:
        return 1
    path = problem.split(":", 1)[0]
    node, line = root, root.start_mark.line + 1
    for name, index in _PATH_TOKEN.findall(path):
        child = None
        if name and isinstance(node, yaml.MappingNode):
            child = next((value for key, value in node.value if key.value == name), None)
            if child is None:
                child = next((key for key, _ in node.value if key.value == name), None)
        elif index and isinstance(node, yaml.SequenceNode) and int(index) < len(node.value):
            child = node.value[int(index)]
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line
