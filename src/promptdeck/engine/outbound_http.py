"""HTTP requests to user-given URLs under the outbound URL policy (domain/outbound_urls.py),
enforced where the connection is made.

Checking a URL's name once and connecting later would let the name resolve to a public address
at the check and to 127.0.0.1 at the connection (DNS rebinding). So the session's connector
resolves names through `GuardedResolver` (engine/outbound_resolvers.py), which refuses the whole
answer if any address in it is refused; aiohttp then connects to one of exactly those checked
addresses. Literal addresses never reach a resolver, so each request's URL is checked too
(`OutboundPolicy.check_url`). Redirects are never followed: the caller passes
`allow_redirects=False` (`OutboundPolicy.post`).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from promptdeck.domain.outbound_urls import IPAddress, address_problem, literal_address, url_problem

if TYPE_CHECKING:  # aiohttp is imported on first use (engine/outbound_resolvers.py says why)
    import aiohttp
    from aiohttp.abc import AbstractResolver, ResolveResult


class OutboundRefused(OSError):
    """A URL or a resolved address the policy refuses (an OSError, so aiohttp reports it as a
    connection failure with this message)."""


class OutboundPolicy:
    """The policy and the resolver names go through. `names` may be replaced (tests map a name
    to an address with their own resolver)."""

    def __init__(self, allow_private: bool, names: AbstractResolver | None = None) -> None:
        self.allow_private = allow_private
        self._names = names

    @property
    def names(self) -> AbstractResolver:
        if self._names is None:
            from promptdeck.engine.outbound_resolvers import SystemResolver

            self._names = SystemResolver()
        return self._names

    @names.setter
    def names(self, resolver: AbstractResolver) -> None:
        self._names = resolver

    async def addresses(self, host: str, port: int, family: int = socket.AF_UNSPEC) -> list[ResolveResult]:
        """Every address `host` resolves to, or `OutboundRefused` if any one is refused."""
        try:
            found = await self.names.resolve(host, port, family=socket.AddressFamily(family))
        except OSError as exc:
            raise OutboundRefused(f"{host} does not resolve: {exc}") from exc
        if not found:
            raise OutboundRefused(f"{host} does not resolve")
        for result in found:
            problem = self.refusal(ipaddress.ip_address(result["host"]))
            if problem:
                raise OutboundRefused(f"{host} resolves to {problem}")
        return found

    def refusal(self, address: IPAddress) -> str | None:
        """Why this policy refuses `address`, or None: the one place every address is judged (a
        test's policy may let its own server through and judge the rest as production does)."""
        return address_problem(address, self.allow_private)

    async def check_url(self, url: str) -> str | None:
        """Why `url` may not be sent to now, with its name resolved, or None."""
        problem = url_problem(url, self.allow_private)
        if problem:
            return problem
        parts = urlsplit(url)
        host = parts.hostname or ""
        address = literal_address(host)
        if address is not None:
            return self.refusal(address)
        try:
            await self.addresses(host, parts.port or (443 if parts.scheme == "https" else 80))
        except OutboundRefused as exc:
            return str(exc)
        return None

    def session(self, timeout: float) -> aiohttp.ClientSession:
        """A session whose every connection goes through `GuardedResolver`."""
        import aiohttp

        from promptdeck.engine.outbound_resolvers import GuardedResolver

        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self), limit=100, ttl_dns_cache=10)
        return aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout), trust_env=False
        )

    async def post(
        self, session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
    ) -> int:
        """POST `body`, not following redirects; returns the status (the answer is not read
        beyond a small prefix). Raises `OutboundRefused` for a refused URL."""
        problem = url_problem(url, self.allow_private)
        if problem:
            raise OutboundRefused(problem)
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            await response.content.read(4096)
            return response.status


def describe_failure(exc: BaseException) -> str:
    """One line for the delivery log: what went wrong with a try, never a secret."""
    from aiohttp import ClientConnectorError

    cause: Any = exc
    if isinstance(exc, ClientConnectorError) and exc.os_error is not None:
        cause = exc.os_error
    text = str(cause) or type(cause).__name__
    return text[:500]
