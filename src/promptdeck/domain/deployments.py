"""Versions, deployments and variants as the engine sees them: resolved, immutable snapshots."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from promptdeck.domain.errors import NotFound
from promptdeck.domain.prompts import PromptSpec
from promptdeck.domain.reliability import VariantConfig


@dataclass(frozen=True, slots=True)
class Version:
    id: str
    prompt_id: str
    prompt_slug: str
    number: int
    spec: PromptSpec
    note: str
    author: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    workspace_id: str
    name: str
    prompt_id: str
    default_variant: str
    variants: dict[str, Version] = field(default_factory=dict)
    configs: dict[str, VariantConfig] = field(default_factory=dict)
    fallback_versions: dict[int, Version] = field(default_factory=dict)  # by number, as fallbacks name them

    def config(self, variant: str) -> VariantConfig:
        return self.configs.get(variant) or VariantConfig()

    def resolve(self, variant: str | None) -> tuple[str, Version]:
        """The variant to serve (the default when none is named) and its version."""
        name = variant or self.default_variant
        version = self.variants.get(name)
        if version is None:
            known = ", ".join(sorted(self.variants)) or "none"
            raise NotFound(f"deployment {self.name!r} has no variant {name!r} (variants: {known})")
        return name, version
