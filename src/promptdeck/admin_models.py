"""The admin API's request models that the console's forms validate with too, so a form and the
API accept the same values. The admin API (surfaces/admin.py) and the console (web/) may not
import each other, so they live here, below both."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, Field

from promptdeck.domain import keys
from promptdeck.domain.runs import utcnow


class PromptIn(BaseModel):
    slug: str
    name: str = ""
    description: str = ""
    undeclared_variables: str = Field(
        "declare", description="template variables a new version does not declare: declare or refuse"
    )


class KeyExpiry(BaseModel):
    """When a key stops working: at `expires_at`, or `expires_in_days` from now; neither: never."""

    expires_at: AwareDatetime | None = Field(
        default=None, description="refused from then on (UTC offset required)"
    )
    expires_in_days: float | None = Field(
        default=None, gt=0, le=36500, description="or: this many days from now"
    )

    def expiry(self) -> datetime | None:
        return keys.expiry(self.expires_at, self.expires_in_days, utcnow())


class KeyIn(KeyExpiry):
    name: str = Field("key", min_length=1, max_length=200)
    scopes: list[str] = Field(default_factory=lambda: ["invoke"], description="invoke, read and/or admin")
    deployments: list[str] | None = Field(
        default=None, description="the only deployments this key may call (existing names); null: every one"
    )


class KeyRotateIn(KeyExpiry):
    """The new key's own expiry (`expires_at`/`expires_in_days`, default never), and how long the
    old key keeps working: `grace_seconds` from now, or until `old_expires_at`."""

    grace_seconds: int | None = Field(
        default=None, ge=0, le=keys.MAX_GRACE_SECONDS, description=f"default {keys.GRACE_SECONDS} (24 h)"
    )
    old_expires_at: AwareDatetime | None = Field(default=None, description="or: the old key works until then")

    def old_expiry(self) -> datetime:
        return keys.old_key_expiry(self.grace_seconds, self.old_expires_at, utcnow())


class RetentionIn(BaseModel):
    days: int | None = Field(..., ge=1, le=36500, description="keep runs this many days; null: forever")
