"""The catalog as the admin API answers it (JSON-ready dicts), shared with the console, which
shows the same shapes. The store returns domain objects and rows; the shape of an answer is
decided here, above it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from promptdeck.domain.deployments import Deployment, Version
from promptdeck.store.deployments import VariantMove
from promptdeck.store.prompt_sync import PushReport
from promptdeck.store.prompts import Prompt


def prompt_dict(prompt: Prompt) -> dict[str, Any]:
    return {
        "id": prompt.id,
        "slug": prompt.slug,
        "name": prompt.name,
        "description": prompt.description,
        "undeclared_variables": prompt.undeclared_variables,
        "created_at": prompt.created_at,
    }


def prompt_list_item(prompt: Prompt) -> dict[str, Any]:
    """A prompt in a list: its fields and its newest version's number (null: none yet)."""
    return prompt_dict(prompt) | {"latest_version": prompt.latest_version}


def prompt_detail(prompt: Prompt, versions: list[Version]) -> dict[str, Any]:
    """A prompt with every version in full, oldest first."""
    return prompt_dict(prompt) | {"versions": [version_dict(v) for v in versions]}


def version_dict(version: Version) -> dict[str, Any]:
    return {
        "id": version.id,
        "prompt": version.prompt_slug,
        "number": version.number,
        "note": version.note,
        "author": version.author,
        "created_at": version.created_at,
        **version.spec.to_dict(),
    }


def variant_config_dict(deployment: Deployment, variant: str) -> dict[str, Any]:
    """A variant's config as the API has always shown it: `follows_latest` (a column of its own
    in the store) appears in it when set."""
    data = deployment.config(variant).to_dict()
    data.pop("follows_latest", None)
    if deployment.follows_latest(variant):
        data["follows_latest"] = True
    return data


def deployment_dict(deployment: Deployment) -> dict[str, Any]:
    return {
        "id": deployment.id,
        "name": deployment.name,
        "prompt_id": deployment.prompt_id,
        "default_variant": deployment.default_variant,
        "variants": {
            name: {
                "version": v.number,
                "version_id": v.id,
                "prompt": v.prompt_slug,
                "config": variant_config_dict(deployment, name),
            }
            for name, v in sorted(deployment.variants.items())
        },
    }


def variant_move_dict(move: VariantMove) -> dict[str, Any]:
    return asdict(move)


def push_report_dict(report: PushReport) -> dict[str, Any]:
    return {
        "prompt": report.prompt,
        "prompt_created": report.prompt_created,
        "version": report.version,
        "version_created": report.version_created,
        "variants": [asdict(m) for m in report.moves],
        "changed": report.changed,
    } | ({"datasets": report.datasets} if report.datasets else {})  # the datasets the push changed
