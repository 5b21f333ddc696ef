"""Rate limits and budgets: what a workspace sets, and whom each applies to (docs/governance.md).

A limit or a budget names a subject: the workspace, a key, a deployment or an end user (the
`user` of a call). An empty subject means each one of its kind: `("end_user", "")` with 20
requests a minute gives every end user their own 20. A workspace's subject is always empty.
These are plain values: the engine counts them (engine/quota_*), the store keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from promptdeck.domain.values import immutable

SUBJECT_KINDS = ("workspace", "key", "deployment", "end_user")
EACH = ""  # a subject that means each one of its kind
PERIODS = ("day", "month")  # UTC calendar days and months
WINDOW_SECONDS = 60.0  # limits are per minute


@dataclass(frozen=True, slots=True)
class RateLimit:
    id: str
    subject_kind: str
    subject: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class Budget:
    id: str
    subject_kind: str
    subject: str
    period: str
    amount_usd: float


@dataclass(frozen=True, slots=True)
class WorkspaceQuotas:
    """Everything one workspace limits, as the invoke path reads it (cached, like deployments)."""

    limits: tuple[RateLimit, ...] = ()
    budgets: tuple[Budget, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.limits and not self.budgets


NO_QUOTAS = WorkspaceQuotas()


@immutable
class CallSubjects:
    """Who one call is, for each subject kind (None: the call has none of that kind, e.g. no
    `user` was given, so no end-user limit applies)."""

    workspace_id: str
    key_id: str | None
    deployment: str
    end_user: str | None

    def matched(self, subject_kind: str, subject: str) -> str | None:
        """The subject a limit or budget counts this call under, or None when it does not apply."""
        if subject_kind == "workspace":
            return EACH
        by_kind = {"key": self.key_id, "deployment": self.deployment, "end_user": self.end_user}
        mine = by_kind.get(subject_kind)
        if mine is None:
            return None
        return mine if subject in (EACH, mine) else None


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The UTC day or month `now` falls in, as [start, end)."""
    now = now.astimezone(UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, datetime.fromtimestamp(start.timestamp() + 86400, UTC)
    if period == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        return start, end
    raise ValueError(f"period must be one of {', '.join(PERIODS)}; got {period!r}")
