"""Versions, deployments and variants as the engine sees them: resolved, immutable snapshots."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from promptdeck.domain.errors import NotFound
from promptdeck.domain.prompts import PromptSpec
from promptdeck.domain.reliability import DEFAULT_CONFIG, VariantConfig
from promptdeck.domain.traffic_split import choose, point

LATEST = "latest"  # a release tag every deployment has: its current release, the default variant
DRAFT = 0  # the number of a version not saved (the playground's draft); it has no id either


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

    @property
    def saved(self) -> bool:
        """False for an unsaved draft: it has no id or number a run could point at."""
        return self.number != DRAFT


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    workspace_id: str
    name: str
    prompt_id: str
    default_variant: str
    variants: dict[str, Version] = field(default_factory=dict)
    configs: dict[str, VariantConfig] = field(default_factory=dict)
    # Versions a variant config names by number (fallbacks, split arms), by number.
    named_versions: dict[int, Version] = field(default_factory=dict)
    newest: Version | None = None  # the prompt's newest version, released or not
    # Variants that follow `latest`: each new version of the prompt moves them (a catalog
    # state, not part of the variant's user-set config).
    following: frozenset[str] = frozenset()

    def config(self, variant: str) -> VariantConfig:
        return self.configs.get(variant) or DEFAULT_CONFIG

    def follows_latest(self, variant: str) -> bool:
        return variant in self.following

    def resolve(self, variant: str | None) -> tuple[str, Version]:
        """The variant to serve and its version: the default when none is named, and when the
        tag `latest` is named and no variant has that name. `latest` is the deployment's
        current release, as Vellum's `LATEST` is: never a version saved but not deployed."""
        name = variant or self.default_variant
        version = self.variants.get(name)
        if version is None and name.lower() == LATEST:
            name = self.default_variant
            version = self.variants.get(name)
        if version is None:
            known = ", ".join(sorted(self.variants)) or "none"
            raise NotFound(f"deployment {self.name!r} has no variant {name!r} (variants: {known})")
        return name, version

    def serve(self, variant: str | None, end_user: str | None = None) -> tuple[str, Version]:
        """Like `resolve`, but a variant that splits traffic picks one of its versions by
        weight: the same one for the same end user, at random for a call without one."""
        name, version = self.resolve(variant)
        split = self.config(name).split
        if not split:
            return name, version
        number = choose(split, point(self.name, name, end_user))
        return name, self.named_versions.get(number, version)


def draft_version(spec: PromptSpec, prompt_slug: str, author: str) -> Version:
    """An unsaved draft as a version the engine can run (the playground's)."""
    return Version("", "", prompt_slug, DRAFT, spec, "", author, datetime.now(UTC))


def standalone(workspace_id: str, name: str, version: Version) -> Deployment:
    """A deployment of one version, outside the catalog: how the playground runs a draft or a
    saved version through the engine with the default reliability rules."""
    return Deployment("", workspace_id, name, version.prompt_id, "default", {"default": version})
