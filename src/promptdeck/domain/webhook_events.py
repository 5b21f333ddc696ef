"""A webhook event as its receiver sees it: the JSON body, and the signature that proves promptdeck
sent it (docs/operations.md "Webhooks" shows how a receiver checks it).

The body is `{"id", "type", "created_at", "workspace_id", "data"}`, made once per event and sent
byte for byte on every try. Each try is signed anew: `Promptdeck-Webhook-Signature: v1=<hex>`,
the HMAC-SHA256, keyed with the endpoint's secret (its UTF-8 bytes), of `"{timestamp}.{body}"`,
where the timestamp (Unix seconds) is also sent as `Promptdeck-Webhook-Timestamp`. A receiver
that refuses a timestamp older than five minutes cannot be replayed an old request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import asdict
from datetime import datetime
from typing import Any

import orjson

from promptdeck.domain.change_events import EVENT_TYPES, Fact

PING = "ping"  # sent by "send a test ping"; every endpoint receives it, whatever its events
SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
TOLERANCE_SECONDS = 300  # what receivers are told to accept; promptdeck itself never checks it

HEADER_ID = "Promptdeck-Webhook-Id"
HEADER_TIMESTAMP = "Promptdeck-Webhook-Timestamp"
HEADER_SIGNATURE = "Promptdeck-Webhook-Signature"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def fact_data(fact: Fact) -> dict[str, Any]:
    return asdict(fact)


def event_body(
    event_id: str, event_type: str, workspace_id: str, created_at: datetime, data: dict[str, Any]
) -> bytes:
    return orjson.dumps(
        {
            "id": event_id,
            "type": event_type,
            "created_at": created_at.isoformat(),
            "workspace_id": workspace_id,
            "data": data,
        }
    )


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=<hex>`: HMAC-SHA256 of `{timestamp}.{body}` keyed with the secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def signed_headers(event_id: str, secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "promptdeck-webhooks",
        HEADER_ID: event_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: signature(secret, timestamp, body),
    }


def events_problem(events: list[str]) -> str | None:
    """Why an endpoint cannot subscribe to `events`, or None."""
    if not events:
        return "events: name at least one of " + ", ".join(EVENT_TYPES)
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        return f"events: unknown {', '.join(map(repr, unknown))}; known: {', '.join(EVENT_TYPES)}"
    return None
