"""A run's session: the caller's id for the conversation (or request) several runs belong to, so
the run log can show them together (docs/operations.md, "Sessions"). Every dialect takes it from
the `X-Promptdeck-Session-Id` header; Fetch Hive, OpenAI, Traceport and Vellum also from the
`session_id` key of the body's `metadata`, which is then moved out of the metadata into the run's
session (so it is stored once, and does not add a usage-rollup row per session). The header wins
when both are given. Empty or null: no session."""

from __future__ import annotations

from typing import Any

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.schema_problems import at, described, fail

SESSION_HEADER = "X-Promptdeck-Session-Id"
SESSION_KEY = "session_id"  # in the body's `metadata`
SESSION_ID_MAX = 200  # the runs table's column (store/tables.py)


def session_id_problem(value: Any) -> str | None:
    """What is wrong with a given session id, or None when it can be stored: a string of at most
    SESSION_ID_MAX printable characters (no newlines, tabs or other control characters)."""
    if not isinstance(value, str):
        return f"expected a string; got {described(value)}"
    if len(value) > SESSION_ID_MAX:
        return f"expected at most {SESSION_ID_MAX} characters; got {len(value)}"
    if not value.isprintable():
        return f"expected printable characters only (no control characters); got {value!r}"
    return None


def header_session_id(text: str) -> str | None:
    """The session id of the header's (stripped) value; empty is none. A bad one is refused,
    naming the header, in the calling dialect's error shape."""
    if not text:
        return None
    problem = session_id_problem(text)
    if problem is not None:
        raise ValidationFailed(f"{SESSION_HEADER} header: {problem}", loc=(SESSION_HEADER,))
    return text


def check_metadata_session(title: str, metadata: dict[str, Any] | None) -> None:
    """For a body model's validator: refuse a bad `metadata.session_id`, at that path."""
    value = (metadata or {}).get(SESSION_KEY)
    if value is None or value == "":
        return
    problem = session_id_problem(value)
    if problem is not None:
        raise at(title, [(("metadata", SESSION_KEY), fail("session_id", problem), value)])


def take_session(metadata: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
    """The metadata without its `session_id` key (None when nothing else is left), and the
    session id it gave (checked by `check_metadata_session`); both as given when it has none."""
    if not metadata or SESSION_KEY not in metadata:
        return metadata or None, None
    rest = {key: value for key, value in metadata.items() if key != SESSION_KEY}
    return rest or None, metadata[SESSION_KEY] or None
