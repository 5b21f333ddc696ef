"""Who may change what in an upstream request, one call at a time (Vellum's `raw_overrides`).

A raw override reaches the provider's request unchecked, so it is where a caller could make
the server send a stored credential somewhere else, run another model than the one the run is
priced and logged as, or lift the version's limits. The rules (docs/security.md):

* `url`: only onto a base URL an administrator put on the server's allow-list
  (`PROMPTDECK_RAW_OVERRIDE_URLS`), whoever calls. A credential is still sent only under the
  base URL it was stored for (`providers/http_upstream.py`), so an allow-listed URL elsewhere
  gets no key unless the caller brings one.
* `headers`: never the ones that frame or route the request; an `invoke`-scope key also never
  the ones that carry a credential.
* `body`: an `invoke`-scope key may not replace what decides which model runs, on what prompt,
  how the answer is framed or how much it may generate: those are the released version's.
  An `admin` key may (it could release such a version anyway).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from promptdeck.domain.errors import Forbidden
from promptdeck.domain.upstream_urls import is_under

FRAMING_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
     "trailer", "expect", "proxy-connection"}
)  # fmt: skip
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "api-key", "x-api-key", "x-goog-api-key", "cookie"}
)
# Upstream body keys that name the model, carry the prompt, frame the answer or bound its size,
# across the providers' formats (OpenAI chat and Responses, Anthropic, Gemini).
PROTECTED_BODY_KEYS = frozenset(
    {"model", "messages", "input", "instructions", "system", "contents", "systemInstruction",
     "stream", "stream_options", "n", "max_tokens", "max_completion_tokens", "max_output_tokens",
     "generationConfig"}
)  # fmt: skip


def check_raw_overrides(
    overrides: Mapping[str, Any] | None, scopes: Iterable[str], allowed_urls: Iterable[str]
) -> None:
    """Raise `Forbidden`, naming every refused part at once, unless the caller may send these."""
    if not overrides:
        return
    admin = "admin" in scopes
    problems: list[str] = []
    url = overrides.get("url")
    if url is not None:
        allowed = list(allowed_urls)
        if not any(is_under(str(url), base) for base in allowed):
            problems.append(
                f"raw_overrides.url: {str(url)[:200]!r} is not under a base URL this server allows "
                + (
                    f"({', '.join(allowed)})"
                    if allowed
                    else "(none are allowed; an administrator lists them in PROMPTDECK_RAW_OVERRIDE_URLS)"
                )
            )
    names = {str(name).lower() for name in (overrides.get("headers") or {})}
    refused = names & (FRAMING_HEADERS if admin else FRAMING_HEADERS | CREDENTIAL_HEADERS)
    if refused:
        problems.append(
            f"raw_overrides.headers: {', '.join(sorted(refused))} may not be set per call"
            + ("" if admin else " with an invoke key")
        )
    if not admin:
        keys = sorted(set(overrides.get("body") or {}) & PROTECTED_BODY_KEYS)
        if keys:
            problems.append(
                f"raw_overrides.body: {', '.join(keys)} may not be replaced with an invoke key; "
                "they belong to the released version (or the dialect's own parameter fields)"
            )
    if problems:
        raise Forbidden("; ".join(problems), details=problems)
