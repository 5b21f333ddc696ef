"""What every HTTP upstream shares: one pooled client, time limits, server-sent-event
reading, and turning each kind of trouble into a `Failed` event a person can act on.

The client is providers/http_client.py, on httptools: measured here, httpx cost 850-2,100 µs
of CPU per upstream call (its pool scans every connection per request), aiohttp's 63-75 µs,
and it 14-18 µs (bench/README.md, "The upstream client").

A provider subclasses `HttpUpstream` and supplies only its own wire format:
`request()` (the exact call), `parse_body()` (a whole answer) and `parse_stream()`
(an event stream). A failure is `retryable` only while nothing reached the caller.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar, Self, cast
from urllib.parse import urlsplit

import orjson

from promptdeck.domain.errors import PromptdeckError
from promptdeck.domain.events import Event, Failed, Finished
from promptdeck.domain.upstream_urls import is_under
from promptdeck.domain.values import immutable
from promptdeck.providers.base import ProviderCall
from promptdeck.providers.event_stream import EventStreamParser, read_events
from promptdeck.providers.event_stream import SseEvent as SseEvent  # providers import it from here
from promptdeck.providers.http_client import (
    BadResponse,
    CannotConnect,
    ClientError,
    InvalidUrl,
    Response,
    UnsendableRequest,
    UpstreamClient,
)

if TYPE_CHECKING:
    from promptdeck.config import Settings

STATUS_CODES = {
    401: "upstream_auth_failed",
    403: "upstream_auth_failed",
    404: "upstream_not_found",
    408: "upstream_timeout",
    429: "upstream_rate_limited",
}
STATUS_HINTS = {
    401: "check the API key configured for it",
    403: "check the API key configured for it",
    404: "check the model name, and the base URL",
    429: "slow down, or raise the upstream's limits",
}
REDIRECT_HINT = "it redirects: set the base URL to where it points (redirects are not followed)"
RETRYABLE_STATUSES = (408, 409, 429)  # and every 5xx, as the vendors' own clients do
SHAPE_ERRORS = (AttributeError, TypeError, ValueError, KeyError, IndexError)  # JSON of another shape
_TAGS = re.compile(r"<[^>]*>")


class UpstreamFailure(Exception):
    """Raised inside a provider's parsing to end the call with one `Failed` event."""

    def __init__(self, failed: Failed) -> None:
        super().__init__(failed.message)
        self.failed = failed


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0
    read: float = 60.0  # silence allowed between two bytes of a stream
    total: float = 300.0


@immutable
class UpstreamRequest:
    """One upstream call, exactly as it is sent (headers here are the per-call ones)."""

    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class HttpUpstream:
    """Base of the providers that speak JSON (and server-sent events) over HTTP."""

    hints: dict[int, str] = STATUS_HINTS

    name: str  # each provider's default; a named OpenAI-compatible upstream sets its own
    fixed_headers: ClassVar[dict[str, str]] = {}  # sent on every call (never a secret)

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        name: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        total_timeout: float = 300.0,
    ) -> None:
        self.name = name or type(self).name
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key  # the server's own key: sent only under `base_url`
        self.timeouts = Timeouts(connect_timeout, read_timeout, total_timeout)
        self.headers = {"Content-Type": "application/json", **self.fixed_headers}
        self._client: UpstreamClient | None = None

    def client(self) -> UpstreamClient:
        """One client and its pooled connections, made on first use."""
        if self._client is None:
            self._client = UpstreamClient()
        return self._client

    @classmethod
    def configured(cls, settings: Settings, base_url: str, api_key: str, **options: Any) -> Self:
        """A provider at `base_url` with the server's upstream time limits. Every concrete
        provider is built as `Provider(base_url, api_key, *, connect/read/total_timeout, …)`."""
        build: Any = cls
        return cast(
            Self,
            build(
                base_url,
                api_key,
                connect_timeout=settings.upstream_connect_timeout,
                read_timeout=settings.upstream_read_timeout,
                total_timeout=settings.upstream_total_timeout,
                **options,
            ),
        )

    # ── what a provider supplies ────────────────────────────────────────────

    def request(self, call: ProviderCall) -> UpstreamRequest:
        raise NotImplementedError

    def parse_body(self, body: dict[str, Any]) -> list[Event]:
        raise NotImplementedError

    def parse_stream(self, events: AsyncIterator[SseEvent]) -> AsyncGenerator[Event, None]:
        raise NotImplementedError

    def streams(self, headers: Mapping[str, str]) -> bool:
        """Whether an answer to a streaming call is an event stream (some servers ignore
        the request and answer in one JSON object)."""
        return "json" not in headers.get("content-type", "")

    # ── the shared call ─────────────────────────────────────────────────────

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """How a key is sent (a bearer token unless the provider says otherwise); no key, no header."""
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def payload(self, call: ProviderCall) -> dict[str, Any]:
        """The exact JSON body the upstream would receive, without sending it."""
        return self.prepared(call).body

    def prepared(self, call: ProviderCall) -> UpstreamRequest:
        """The request as sent: the provider's own, the caller's raw overrides (body keys replaced
        one by one; who may send which is `domain/override_policy.py`'s business), and the
        credential, attached only when the URL is under the base URL it belongs to."""
        upstream = self.request(call)
        raw = call.raw_overrides or {}
        url = str(raw.get("url") or upstream.url)
        body = {**upstream.body, **raw["body"]} if raw.get("body") else upstream.body
        # The workspace's stored credential belongs to its own base URL (or the server's, when it
        # stores none); the server's key belongs to the server's base URL only.
        key, home = (
            (call.api_key, call.base_url or self.base_url)
            if call.api_key is not None
            else (self._api_key, self.base_url)
        )
        credential = self.auth_headers(key) if key and is_under(url, home) else {}
        return UpstreamRequest(url, body, {**credential, **upstream.headers, **(raw.get("headers") or {})})

    async def stream(self, call: ProviderCall) -> AsyncIterator[Event]:
        try:
            upstream = self.prepared(call)
        except PromptdeckError as exc:  # the call cannot be expressed in this upstream's format
            yield Failed("invalid_request", f"{self.name}: {exc.message}")
            return
        parts = urlsplit(upstream.url)
        if parts.username is not None or parts.password is not None:
            yield self.failed(
                "upstream_misconfigured",
                f"URL {shown_url(upstream.url)} holds a user name or password; "
                "store the secret as the credential's API key and the URL without it",
            )
            return
        deadline = time.monotonic() + self.timeouts.total
        # A non-streamed answer arrives in one piece once the whole generation is done, so
        # silence until then is normal: only the total limit can judge it.
        silence = self.timeouts.read if call.stream else self.timeouts.total
        limit = "read timeout" if call.stream else "total time limit"
        opened = sent = False  # an event stream began; an event reached the caller
        response: Response | None = None
        try:
            response = await self.client().post(
                upstream.url,
                orjson.dumps(upstream.body),
                _merged(self.headers, upstream.headers),
                connect_timeout=call.connect_timeout or self.timeouts.connect,
                silence=silence,
            )  # redirects are not followed: one would carry the credential wherever it points
            if response.status >= 300:
                failed = self.status_failure(upstream.url, response.status, await response.read())
                wait = retry_after(response.headers.get("retry-after"))
                yield failed if wait is None else replace(failed, retry_after=wait)
                return
            if call.stream and self.streams(response.headers):
                opened = True
                raw: dict[str, Any] | None = {} if call.keep_raw else None
                async with aclosing(self.parse_stream(self._sse(response, deadline, raw))) as events:
                    async for event in events:
                        sent = True
                        yield replace(event, raw=raw) if raw and isinstance(event, Finished) else event
            else:
                body = self.json(await response.read())
                try:
                    parsed = self.parse_body(body)
                except SHAPE_ERRORS:
                    raise UpstreamFailure(
                        self.failed(
                            "upstream_bad_response",
                            f"answered in a shape it cannot read: {str(body)[:200]}",
                        )
                    ) from None
                for event in parsed:
                    yield replace(event, raw=body) if call.keep_raw and isinstance(event, Finished) else event
        except UpstreamFailure as failure:
            yield failure.failed
        except UnsendableRequest as exc:
            yield Failed("invalid_request", f"{self.name}: {exc}")
        except (TimeoutError, ClientError) as exc:
            yield self.transport_failure(
                upstream.url, exc, f"{silence:g} s (the upstream {limit})", opened, sent
            )
        finally:
            if response is not None:
                response.close()  # an answer not read to its end does not leave its connection reusable

    async def _sse(
        self, response: Response, deadline: float, raw: dict[str, Any] | None = None
    ) -> AsyncGenerator[SseEvent, None]:
        """The body's server-sent events; the total time limit is checked between them, and a
        body that is no event stream at all is reported as such. With `raw`, the top-level keys
        of every JSON event are gathered into it (the last one wins)."""

        def within_deadline() -> None:
            if time.monotonic() > deadline:
                raise UpstreamFailure(
                    self.failed(
                        "upstream_timeout", f"exceeded the total time limit of {self.timeouts.total:g} s"
                    )
                )

        parser = EventStreamParser()
        seen = False
        async for event in read_events(response, parser, within_deadline):
            seen = True
            if raw is not None:
                _gather(raw, event.data)
            yield event
        if not seen and parser.stray:
            raise UpstreamFailure(
                self.failed("upstream_bad_response", f"answered with no event stream: {parser.stray!r}")
            )

    # ── failures ────────────────────────────────────────────────────────────

    def failed(self, code: str, problem: str, retryable: bool = False) -> Failed:
        return Failed(code, f"{self.name} upstream {problem}", retryable)

    def status_failure(self, url: str, status: int, body: bytes) -> Failed:
        phrase = _phrase(status)
        detail = error_detail(body)
        hint = self.hints.get(status) or (REDIRECT_HINT if status < 400 else None)
        return self.failed(
            STATUS_CODES.get(status, "upstream_error" if status >= 500 else "upstream_rejected"),
            f"at {shown_url(url)} answered HTTP {status} {phrase}".rstrip()
            + (f": {detail}" if detail else "")
            + (f" ({hint})" if hint else ""),
            retryable=status in RETRYABLE_STATUSES or status >= 500,
        )

    def transport_failure(
        self, url: str, exc: ClientError | TimeoutError, limit: str, opened: bool, sent: bool
    ) -> Failed:
        """Once an event has gone out, a retry would repeat it: only an untouched call is retryable,
        and never after a timeout."""
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, CannotConnect | InvalidUrl):
            return self.failed(
                "upstream_unreachable",
                f"at {shown_url(url)} cannot be reached ({what}); is it running, and is the base URL right?",
                retryable=isinstance(exc, CannotConnect),
            )
        if isinstance(exc, TimeoutError):
            # Not retried: the attempt has already spent the server's whole limit, and a second
            # one would double the caller's wait (a fallback still gets its turn).
            return self.failed(
                "upstream_timeout", f"at {shown_url(url)} sent nothing{' more' if sent else ''} for {limit}"
            )
        if isinstance(exc, BadResponse):
            return self.failed("upstream_bad_response", f"at {shown_url(url)} {exc}", retryable=not sent)
        if opened:
            return self.failed(
                "upstream_stream_cut", f"broke the stream off before it finished ({what})", retryable=not sent
            )
        return self.failed(
            "upstream_error", f"at {shown_url(url)}: the connection failed ({what})", retryable=True
        )

    def json(self, raw: bytes | str) -> dict[str, Any]:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            shown = raw[:200] if isinstance(raw, str) else raw[:200].decode(errors="replace")
            raise UpstreamFailure(
                self.failed("upstream_bad_response", f"sent something that is not JSON: {shown!r}")
            ) from None
        if not isinstance(value, dict):
            raise UpstreamFailure(self.failed("upstream_bad_response", "sent JSON that is not an object"))
        return value

    def unreadable(self, what: str, data: str) -> UpstreamFailure:
        return UpstreamFailure(
            self.failed("upstream_bad_response", f"sent {what} it cannot read: {data[:200]}")
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _merged(base: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """`base` with `extra`'s headers over it, names compared regardless of case."""
    if not extra:
        return base
    taken = {name.lower() for name in extra}
    return {**{name: value for name, value in base.items() if name.lower() not in taken}, **extra}


def _gather(raw: dict[str, Any], data: str) -> None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    if isinstance(value, dict):
        raw.update(value)


def shown_url(url: str) -> str:
    """A URL as it may appear in a message a caller reads: no user info, query or fragment,
    where a token could hide."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unreadable URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def retry_after(header: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number, or an HTTP date."""
    if not header:
        return None
    try:
        return max(float(header), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(header).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def error_message(error: Any) -> str:
    """A vendor's `{"message", "code"|"status"}`, as one line with the code that names the cause."""
    if not isinstance(error, dict) or not error.get("message"):
        return " ".join(str(error).split())
    code = error.get("code") or error.get("status")
    message = " ".join(str(error["message"]).split())  # one line, whatever the vendor sent
    return f"{message} ({code})" if code else message


def error_detail(body: bytes) -> str:
    """The upstream's own words from an error body: a vendor error object, FastAPI's `detail`,
    or the text itself (an HTML page stripped to its words), on one short line."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict):  # Gemini wraps errors in a list
        parsed = parsed[0]
    if isinstance(parsed, dict) and ("error" in parsed or "detail" in parsed):
        return error_message(parsed["error"]) if "error" in parsed else str(parsed["detail"])
    text = body[:2000].decode(errors="replace")
    if text.lstrip().startswith("<"):
        text = _TAGS.sub(" ", text)
    return " ".join(text.split())[:300]
