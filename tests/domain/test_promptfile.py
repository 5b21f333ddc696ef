"""Prompt files: YAML in, a checked document out, every problem as `file:LINE: path: message`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.promptfile import TOP_LEVEL, PromptFileError, load_prompt_file
from promptdeck.domain.prompts import parse_spec

VALID = """\
prompt: summarize
name: Summarize
description: One sentence summaries.
note: first cut
model: local/smollm2-135m-instruct
params: {temperature: 0.0, max_tokens: 24}
messages:
  - role: system
    content: You summarize text in one sentence.
  - role: user
    content: "Summarize: {{text}}"
inputs:
  text: {type: string, required: true}
  style: {type: string, default: plain}
deploy:
  summarize: {default: latest, pinned: 1}
"""


def errors_of(text: str, source: str = "prompts/p.yaml") -> list[str]:
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(text, source)
    error = caught.value
    assert isinstance(error, ValidationFailed)
    lines = error.message.split("\n")
    if error.details is not None:
        assert error.details == lines
    for line in lines:
        assert re.match(rf"^{re.escape(source)}:\d+: ", line), line
    return lines


def error_at(text: str, line: int, starts: str, source: str = "prompts/p.yaml") -> str:
    """The one problem reported, checked to be on `line` and to start with `starts`."""
    (message,) = errors_of(text, source)
    assert message.startswith(f"{source}:{line}: {starts}"), message
    return message


def test_a_valid_file() -> None:
    document = load_prompt_file(VALID, "summarize.yaml")
    assert document["prompt"] == "summarize"
    assert document["deploy"] == {"summarize": {"default": "latest", "pinned": 1}}
    spec = parse_spec(document)
    assert [m.role for m in spec.messages] == ["system", "user"]
    assert list(spec.inputs) == ["text", "style"]


def test_the_example_file_shipped_with_promptdeck_is_valid() -> None:
    example = Path(__file__).parents[2] / "examples" / "summarize.yaml"
    assert load_prompt_file(example.read_text(), str(example))["prompt"]


def test_yaml_syntax_error_names_its_line() -> None:
    text = VALID.replace("  - role: user\n", "  - role: user\n   bad indent: x\n")
    error_at(text, 11, "not valid YAML: expected <block end>")


def test_unclosed_flow_collection_is_a_yaml_error() -> None:
    (message,) = errors_of("prompt: x\nmodel: [local/m\n")
    assert "not valid YAML" in message


@pytest.mark.parametrize("text", ["", "just text", "- a\n- b\n", "42"], ids=repr)
def test_a_file_must_be_a_mapping(text: str) -> None:
    error_at(text, 1, "a prompt file is a mapping")


def test_a_bad_role_is_reported_on_its_line() -> None:
    text = VALID.replace("  - role: user\n", "  - role: human\n")
    error_at(text, 10, "messages[1].role: expected one of system, user, assistant; got 'human'")


def test_a_bad_role_in_flow_style_on_line_six() -> None:
    text = """\
prompt: summarize
model: local/smollm2-135m-instruct
params: {temperature: 0.0}
messages:
  - {role: system, content: "You summarize."}
  - {role: bogus, content: "Summarize: {{text}}"}
"""
    error_at(text, 6, "messages[1].role: ")


@pytest.mark.parametrize(
    ("old", "new", "line", "starts"),
    [
        ("model: local/smollm2-135m-instruct", "model: smollm2", 5, "model: expected 'provider/model'"),
        ("{temperature: 0.0, max_tokens: 24}", "{temperature: 0.0, max_tokens: 0}", 6, "params.max_tokens: "),
        (
            "params: {temperature: 0.0, max_tokens: 24}",
            "params:\n  temperature: 5",
            7,
            "params.temperature: ",
        ),
        (
            "params: {temperature: 0.0, max_tokens: 24}",
            "params: {temperature: .nan}",
            6,
            "params.temperature: ",
        ),
        ('    content: "Summarize: {{text}}"', "    content: [1, 2]", 11, "messages[1].content: "),
        ("style: {type: string, default: plain}", "style: {type: text}", 14, "inputs.style.type: "),
        ("prompt: summarize", "prompt: Summarize Things", 1, "prompt: prompt must be"),
    ],
    ids=lambda value: str(value)[:24],
)
def test_an_invalid_field_is_reported_on_its_line(old: str, new: str, line: int, starts: str) -> None:
    assert old in VALID
    error_at(VALID.replace(old, new), line, starts)


def test_a_missing_field_points_at_the_start_of_the_file() -> None:
    text = "\n".join(line for line in VALID.splitlines() if not line.startswith("model:"))
    error_at(text, 1, "model: expected 'provider/model'")


def test_an_unknown_top_level_field() -> None:
    message = error_at(VALID + "temprature: 0.5\n", 17, "temprature: unknown field")
    for known in TOP_LEVEL:
        assert known in message


def test_every_problem_is_reported_with_its_own_line() -> None:
    text = """\
prompt: summarize
model: local/smollm2-135m-instruct
params:
  temperature: 3
  max_tokens: 24
messages:
  - role: user
    content: "{{text}}"
  - role: robot
    content: hi
colour: blue
deploy:
  summarize:
    default: newest
"""
    assert errors_of(text, "p.yaml") == [
        "p.yaml:11: colour: unknown field (known: " + ", ".join(TOP_LEVEL) + ")",
        "p.yaml:9: messages[1].role: expected one of system, user, assistant; got 'robot'",
        "p.yaml:4: params.temperature: must be between 0.0 and 2.0; got 3",
        "p.yaml:14: deploy.summarize.default: expected 'latest' or a version number; got 'newest'",
    ]


# ── deploy ───────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("target", ["newest", "'3'", "0", "-1", "true", "1.5", "null", "[1]"])
def test_bad_deploy_targets(target: str) -> None:
    text = VALID.replace("{default: latest, pinned: 1}", f"{{default: latest, pinned: {target}}}")
    error_at(text, 16, "deploy.summarize.pinned: expected 'latest' or a version number; got ")


@pytest.mark.parametrize("target", ["latest", "1", "12"])
def test_good_deploy_targets(target: str) -> None:
    load_prompt_file(VALID.replace("pinned: 1", f"pinned: {target}"))


@pytest.mark.parametrize(
    ("deploy", "starts"),
    [
        ("deploy: [summarize]", "deploy: expected deployment name -> {variant"),
        ("deploy: latest", "deploy: expected deployment name -> {variant"),
        ("deploy: {summarize: latest}", "deploy.summarize: expected {variant: latest or a version number}"),
        ("deploy: {summarize: {}}", "deploy.summarize: expected {variant: latest or a version number}"),
    ],
)
def test_bad_deploy_shapes(deploy: str, starts: str) -> None:
    text = VALID.replace("deploy:\n  summarize: {default: latest, pinned: 1}\n", deploy + "\n")
    error_at(text, 15, starts)


def test_deploy_problems_point_at_the_right_deployment_whatever_its_name() -> None:
    """Deployment names may hold '-' (and start with a digit): the line is still the variant's."""
    text = """\
prompt: summarize
model: local/smollm2-135m-instruct
messages:
  - {role: user, content: "{{text}}"}
deploy:
  summarize:
    default: latest
  summarize-v2:
    default: latest
    beta: nope
  2fast:
    default: 0
"""
    assert errors_of(text, "p.yaml") == [
        "p.yaml:10: deploy.summarize-v2.beta: expected 'latest' or a version number; got 'nope'",
        "p.yaml:12: deploy.2fast.default: expected 'latest' or a version number; got 0",
    ]


def test_prompt_files_take_the_template_and_input_settings() -> None:
    from promptdeck.domain.promptfile import document_problems

    base = {"prompt": "p", "model": "local/m", "messages": [{"role": "user", "content": "{{ text }}"}]}
    assert document_problems({**base, "template_syntax": "jinja2", "extra_inputs": "forbid"}) == []
    assert document_problems({**base, "undeclared_variables": "refuse", "inputs": {"text": "string"}}) == []
    assert document_problems({**base, "undeclared_variables": "refuse"}) == [
        "inputs.text: used in the messages but not declared (this prompt refuses undeclared variables)"
    ]
    assert document_problems({**base, "undeclared_variables": "never"})[0].startswith(
        "undeclared_variables: expected one of declare, refuse"
    )
