"""The admin API's request models that the console's forms validate with too, so a form and the
API accept the same values. The admin API (surfaces/admin.py) and the console (web/) may not
import each other, so they live here, below both."""

from __future__ import annotations

from pydantic import BaseModel, Field


class PromptIn(BaseModel):
    slug: str
    name: str = ""
    description: str = ""
    undeclared_variables: str = Field(
        "declare", description="template variables a new version does not declare: declare or refuse"
    )


class KeyIn(BaseModel):
    name: str = "key"
    scopes: list[str] = Field(default_factory=lambda: ["invoke"])


class RetentionIn(BaseModel):
    days: int | None = Field(..., ge=1, le=36500, description="keep runs this many days; null: forever")
