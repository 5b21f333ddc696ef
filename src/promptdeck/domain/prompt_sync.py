"""Prompt files written back from the server (`promptdeck pull`): the document, and its YAML.

The YAML is deterministic — fixed key order, sorted `params` and `inputs`, no anchors, one
quoting rule — so pulling twice gives the same bytes, and pushing what was pulled changes
nothing (the content hashes the same, and every variant is written as the number it serves:
a push of the number a variant serves leaves it as it is, a `latest` follower included, so the
file and the server agree; docs/releases.md).
"""

from __future__ import annotations

from typing import Any

import yaml

from promptdeck.domain.deployments import Deployment, Version


def pulled_document(
    slug: str, name: str, description: str, version: Version, deployments: list[Deployment]
) -> dict[str, Any]:
    """The prompt file that reproduces `version` (the prompt's newest) and the variants of
    `deployments` (those serving the prompt) exactly."""
    content = version.spec.to_dict()
    document: dict[str, Any] = {"prompt": slug, "version": version.number}
    if name and name != slug:
        document["name"] = name
    if description:
        document["description"] = description
    document["model"] = content.pop("model")
    params = content.pop("params")
    if params:
        document["params"] = {key: params[key] for key in sorted(params)}
    document["messages"] = content.pop("messages")
    inputs = content.pop("inputs")
    if inputs:
        document["inputs"] = {key: inputs[key] for key in sorted(inputs)}
    document.update(content)  # tools, tool_choice, response_format: only when set
    deploy = {}
    for deployment in sorted(deployments, key=lambda d: d.name):
        order = sorted(deployment.variants, key=lambda v: (v != deployment.default_variant, v))
        deploy[deployment.name] = {
            variant: deployment.variants[variant].number  # a number, followers too: see below
            for variant in order
        }
    if deploy:
        document["deploy"] = deploy
    return document


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None  # multi-line templates read as written
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def dump_prompt_file(document: dict[str, Any]) -> str:
    return yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1_000_000,
    )
