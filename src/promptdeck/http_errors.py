"""Any exception a route lets out, as a PromptdeckError: `as_error` and the HTTP exceptions it
knows. Both the dialects and the admin API (surfaces/) and the console (web/) answer with it,
and neither may import the other, so it lives here, below both. The rest of what the dialects
share (body limits, JSON bodies, keep-alive, security headers) is surfaces/http.py."""

from __future__ import annotations

import logging

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from promptdeck.domain import schema_problems
from promptdeck.domain.errors import PayloadTooLarge, PromptdeckError, ValidationFailed
from promptdeck.store.database import holds_nul

log = logging.getLogger("promptdeck.http")


class BodyTooLarge(HTTPException):
    """Raised while the body is read; an HTTPException so FastAPI's own body parsing lets it through."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")


class ClientGone(PromptdeckError):
    """The caller hung up before its non-streaming answer was ready (answered with nginx's 499,
    which nobody reads)."""

    code = "client_closed_request"

    def __init__(self, message: str = "the caller went away before the answer was ready") -> None:
        super().__init__(message)


def as_error(exc: Exception) -> PromptdeckError:
    """Any exception a route lets out, as a PromptdeckError with a message a person can act on."""
    if isinstance(exc, PromptdeckError):
        return exc
    if isinstance(exc, ClientDisconnect) or isinstance(exc.__cause__, ClientDisconnect):  # nobody to answer
        log.info("the caller went away while sending its request")
        return ClientGone("the caller went away before its request arrived")
    if isinstance(exc, BodyTooLarge):
        return PayloadTooLarge(str(exc.detail))
    if isinstance(exc, RequestValidationError):
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return ValidationFailed("the request body is not valid JSON")
        problems = schema_problems.lines(exc.errors())
        return ValidationFailed("invalid request: " + "; ".join(problems), details=problems)
    if isinstance(exc, StarletteHTTPException):  # FastAPI's and the router's own (unknown path, method)
        if exc.status_code == 400 and isinstance(exc.__cause__, BodyTooLarge):
            return as_error(exc.__cause__)
        error = PromptdeckError(str(exc.detail))
        error.code = {400: "validation_error", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "bad_request"
        )
        return error
    if holds_nul(exc):
        return ValidationFailed(
            "a text value holds a NUL character (\\u0000), which the database cannot store; remove it"
        )
    log.exception("unexpected error", exc_info=exc)
    return PromptdeckError("promptdeck hit an internal error; the run, if any, was logged")
