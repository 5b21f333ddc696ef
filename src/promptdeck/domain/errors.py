"""Errors with a stable code; each dialect maps the code to its own status and shape."""

from __future__ import annotations

import math
from typing import Any


class PromptdeckError(Exception):
    """Base of every error a caller may see. `code` is stable; `message` is for people. `loc`
    names the request field it is about, in `InvokeRequest`'s terms (`("inputs",)`,
    `("model",)`), when there is one: each dialect says it in its own words (OpenAI's `param`)."""

    code = "internal_server_error"
    retry_after: float | None = None  # seconds a caller should wait before trying again

    def __init__(self, message: str, *, details: Any = None, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.loc = loc

    def headers(self) -> dict[str, str]:
        """HTTP headers every dialect sends with this error (`Retry-After`, in whole seconds)."""
        return {} if self.retry_after is None else {"Retry-After": str(math.ceil(self.retry_after))}


class ValidationFailed(PromptdeckError):
    code = "validation_error"


class Unauthorized(PromptdeckError):
    code = "unauthorized"


class Forbidden(PromptdeckError):
    code = "forbidden"


class NotFound(PromptdeckError):
    code = "not_found"


class Conflict(PromptdeckError):
    code = "conflict"


class UnsafePromotion(Conflict):
    """A variant move that its callers' recent inputs say would break them."""

    code = "unsafe_promotion"


class PayloadTooLarge(PromptdeckError):
    code = "payload_too_large"


class RateLimited(PromptdeckError):
    code = "too_many_requests"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float = 1.0,
        details: Any = None,
        window: tuple[int, int, float] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after
        self.window = window  # a rate limit's (limit, remaining, seconds until reset), when it is ours

    def headers(self) -> dict[str, str]:
        """Retry-After, and for promptdeck's own limits X-RateLimit-Limit, -Remaining and -Reset
        (seconds until the window is empty again; docs/governance.md)."""
        headers = super().headers()
        if self.window is not None:
            limit, remaining, reset = self.window
            headers["X-RateLimit-Limit"] = str(limit)
            headers["X-RateLimit-Remaining"] = str(remaining)
            headers["X-RateLimit-Reset"] = str(math.ceil(reset))
        return headers


class BudgetExceeded(RateLimited):
    """A call whose worst-case cost does not fit what a budget has left this period."""

    code = "budget_exceeded"


class QuotaUnavailable(PromptdeckError):
    """The store that counts limits or budgets cannot be reached and the fail policy says refuse
    (PROMPTDECK_BUDGETS_ON_STORE_FAILURE=closed, the default for budgets; docs/configuration.md)."""

    code = "quota_store_unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderFailed(PromptdeckError):
    code = "provider_error"


# The failure code of a prompt longer than the model's context: the embedded model's own, and
# what each provider maps its upstream's overflow error to (OpenAI's own name for it).
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"


class ContextLengthExceeded(PromptdeckError):
    """The rendered prompt does not fit the model's context: the caller's to shorten (a 4xx),
    not the provider's failure."""

    code = CONTEXT_LENGTH_EXCEEDED


# HTTP status for each code; dialects that follow HTTP semantics share it.
HTTP_STATUS: dict[str, int] = {
    "validation_error": 422,
    "bad_request": 400,
    CONTEXT_LENGTH_EXCEEDED: 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "unsafe_promotion": 409,
    "payload_too_large": 413,
    "too_many_requests": 429,
    "budget_exceeded": 429,
    "quota_store_unavailable": 503,
    "provider_error": 502,
    "internal_server_error": 500,
    "client_closed_request": 499,
}
