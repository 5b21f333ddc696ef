"""The resolvers of outbound connections (engine/outbound_http.py), apart because they subclass
aiohttp's: a server that never makes such a request (no webhook, no media to fetch, no trace
export) never imports aiohttp (~14 MB of resident memory with its dependencies)."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

from aiohttp.abc import AbstractResolver, ResolveResult

if TYPE_CHECKING:
    from promptdeck.engine.outbound_http import OutboundPolicy


class SystemResolver(AbstractResolver):
    """The system's resolver (getaddrinfo, in the loop's thread pool), made without a running loop."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, family=family, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG
        )
        return [
            {
                "hostname": host,
                "host": str(address[0]),
                "port": int(address[1]),
                "family": kind,
                "proto": proto,
                "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            }
            for kind, _, proto, _, address in infos
        ]

    async def close(self) -> None:
        return None


class GuardedResolver(AbstractResolver):
    """The connector's resolver: the policy's resolver, with every answer checked."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return await self.policy.addresses(host, port, family)

    async def close(self) -> None:
        await self.policy.names.close()
