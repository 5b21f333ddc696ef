"""Fetching an image or a document that a provider takes only as bytes, under the outbound URL
policy (engine/outbound_http.py), into a `data:` URL before the call.

promptdeck passes URLs on to providers; it fetches one itself only where the provider's API has
no URL field for that part (`media_capability.needs_bytes`: today a PDF for OpenAI's Chat
Completions and Azure). A URL a caller sends could otherwise make the server read what only it
can reach, so each fetch:

* goes only to https URLs whose every resolved address is public, and connects to exactly the
  checked address (the policy's session resolves through `GuardedResolver`: no DNS rebinding);
* follows at most `MAX_REDIRECTS` redirects, each target checked by the same rule;
* stops at the server's `PROMPTDECK_MEDIA_MAX_BYTES` while it streams (not after), and at
  `PROMPTDECK_MEDIA_FETCH_TIMEOUT` seconds for the whole fetch, redirects included;
* takes only the media types the server allows for the part's kind (`MediaPolicy`).

A refusal is `MediaFetchRefused` (the caller's 422, naming the part and the reason). The bytes
are never logged or stored: the run keeps the URL the caller gave.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.media_capability import needs_bytes
from promptdeck.domain.media_sources import DEFAULT_POLICY, DOCUMENT, MediaPolicy, file_name
from promptdeck.engine.outbound_http import OutboundPolicy, OutboundRefused

if TYPE_CHECKING:  # aiohttp is imported on first use (engine/outbound_resolvers.py says why)
    import aiohttp

MAX_REDIRECTS = 3
DEFAULT_TIMEOUT = 10.0
REDIRECTS = frozenset({301, 302, 303, 307, 308})
CHUNK = 64 * 1024


class MediaFetchRefused(ValidationFailed):
    """A part's URL promptdeck had to fetch and would not, or could not (the caller's to fix)."""


class MediaFetcher:
    """Fetches URLs of parts a provider takes only as bytes; `policy` may be replaced (tests let
    their own loopback server through, as the webhook tests do)."""

    def __init__(
        self,
        policy: OutboundPolicy,
        media: MediaPolicy = DEFAULT_POLICY,
        timeout: float = DEFAULT_TIMEOUT,
        max_redirects: int = MAX_REDIRECTS,
    ) -> None:
        self.policy = policy
        self.media = media
        self.timeout = timeout
        self.max_redirects = max_redirects

    async def inline(
        self, family: str, messages: list[dict[str, Any]], inputs: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """`messages` with each part that `family` takes only as bytes fetched into a data: URL
        (a document keeps its file name); new lists and dicts where a part changed, the caller's
        untouched. `inputs` only names, in a refusal, the input a URL came from."""
        fetched: dict[str, str] = {}
        out: list[dict[str, Any]] = []
        for m, message in enumerate(messages):
            content = message.get("content")
            if not isinstance(content, list) or not any(_needs(family, p) for p in content):
                out.append(message)
                continue
            parts: list[Any] = []
            for p, part in enumerate(content):
                if not _needs(family, part):
                    parts.append(part)
                    continue
                url = str(part["source"])
                if url not in fetched:
                    where = _where(m, p, part, url, inputs)
                    fetched[url] = await self.fetch(str(part["type"]), url, where)
                named = {"name": file_name(part)} if part["type"] == DOCUMENT else {}
                parts.append({**part, **named, "source": fetched[url]})
            out.append({**message, "content": parts})
        return out

    async def fetch(self, kind: str, url: str, where: str = "the part") -> str:
        """The file at `url` as a data: URL, or `MediaFetchRefused` saying why not."""
        import aiohttp

        try:
            async with asyncio.timeout(self.timeout), self.policy.session(self.timeout) as session:
                return await self._follow(session, kind, url)
        except TimeoutError:
            reason = f"it took longer than {self.timeout:g}s"
        except _Refused as exc:
            reason = str(exc)
        except aiohttp.ClientConnectorError as exc:  # a refused address comes as its os_error
            cause = exc.os_error if isinstance(exc.os_error, OutboundRefused) else exc
            reason = str(cause) or type(cause).__name__
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            reason = str(exc) or type(exc).__name__
        raise MediaFetchRefused(
            f"{where}: promptdeck could not fetch {_shown(url)}: {reason}",
            details={"url": url, "reason": reason},
            loc=("inputs",),
        )

    async def _follow(self, session: aiohttp.ClientSession, kind: str, url: str) -> str:
        for _ in range(self.max_redirects + 1):
            problem = await self.policy.check_url(url)
            if problem:
                raise _Refused(problem)
            async with session.get(url, allow_redirects=False) as response:
                if response.status in REDIRECTS and "Location" in response.headers:
                    url = urljoin(url, response.headers["Location"])
                    continue
                if response.status != 200:
                    raise _Refused(f"the server answered {response.status}")
                media_type = self._media_type(kind, response)
                body = await self._read(response)
                return f"data:{media_type};base64,{base64.b64encode(body).decode()}"
        raise _Refused(f"more than {self.max_redirects} redirects")

    def _media_type(self, kind: str, response: aiohttp.ClientResponse) -> str:
        allowed = self.media.types(kind)
        media_type = response.content_type.lower()
        if media_type not in allowed:
            raise _Refused(f"it is {media_type}, not one of {', '.join(allowed)}")
        return media_type

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        """The body, refused as soon as it is over the limit (its stated length first)."""
        limit = self.media.max_bytes
        if response.content_length is not None and response.content_length > limit:
            raise _Refused(f"it is {response.content_length} bytes, over this server's limit of {limit}")
        body = bytearray()
        async for chunk in response.content.iter_chunked(CHUNK):
            body += chunk
            if len(body) > limit:
                raise _Refused(f"it is over this server's limit of {limit} bytes")
        return bytes(body)


class _Refused(Exception):
    """Why a fetch stopped, for `MediaFetcher.fetch` to word."""


def _needs(family: str, part: Any) -> bool:
    return isinstance(part, dict) and needs_bytes(family, part)


def _where(m: int, p: int, part: Mapping[str, Any], url: str, inputs: Mapping[str, Any]) -> str:
    """`messages[m].content[p]` and the part's kind, and the input its URL came from, if one."""
    names = [name for name, value in inputs.items() if value == url]
    bound = f" (input {names[0]!r})" if names else ""
    return f"{part['type']} part messages[{m}].content[{p}]{bound}"


def _shown(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."
