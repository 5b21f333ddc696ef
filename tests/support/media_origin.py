"""Real https file servers on loopback for the media fetch tests (engine/media_fetch.py).

* `origin`: the server a prompt's document URL points at, on 127.0.0.2, named `media.test`
  (through `NamesResolver`); it serves a PDF, and misbehaves on request: redirects, HTML, an
  endless body, a slow answer.
* `secret`: a server on 127.0.0.1 that must never be reached (it records every request).

Both use a certificate made here for `media.test`, 127.0.0.1 and 127.0.0.2. `OriginOnly` is the
production outbound policy (https only, public addresses only) except that it trusts that
certificate and lets exactly 127.0.0.2 through: everything else is judged as in production.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from promptdeck.domain.outbound_urls import IPAddress, address_problem
from promptdeck.engine.outbound_http import OutboundPolicy
from promptdeck.engine.outbound_resolvers import GuardedResolver
from tests.support.postgres import free_port

ORIGIN_ADDRESS = "127.0.0.2"
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@dataclass
class Servers:
    origin_port: int
    secret_port: int
    trust: ssl.SSLContext
    secret_hits: list[str] = field(default_factory=list)
    origin_hits: list[str] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)  # path -> bytes written before the end

    def origin(self, path: str) -> str:
        return f"https://media.test:{self.origin_port}{path}"

    def secret(self, path: str = "/secret.pdf") -> str:
        return f"https://127.0.0.1:{self.secret_port}{path}"


class OriginOnly(OutboundPolicy):
    """Production's policy, but trusting the test certificate and letting 127.0.0.2 through."""

    def __init__(self, names: AbstractResolver, trust: ssl.SSLContext) -> None:
        super().__init__(allow_private=False, names=names)
        self.trust = trust

    def refusal(self, address: IPAddress) -> str | None:
        return None if str(address) == ORIGIN_ADDRESS else address_problem(address, allow_private=False)

    def session(self, timeout: float) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self), ssl=self.trust)
        return aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout), trust_env=False
        )


def _certificate(directory: Path) -> tuple[Path, Path, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "media.test")])
    now = datetime.datetime.now(datetime.UTC)
    sans = [x509.DNSName("media.test")] + [
        x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", ORIGIN_ADDRESS)
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = directory / "media.crt", directory / "media.key"
    cert_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file, pem


def _origin_app(servers: Servers) -> web.Application:
    async def report(_: web.Request) -> web.Response:
        return web.Response(body=PDF, content_type="application/pdf")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/hop/{int(request.match_info['n']) + 1}")

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<html>not a pdf</html>", content_type="text/html")

    async def big(_: web.Request) -> web.Response:
        return web.Response(body=PDF + b" " * 100_000, content_type="application/pdf")

    async def endless(request: web.Request) -> web.StreamResponse:
        """A PDF that never ends and states no length: only a cap enforced while reading stops it."""
        response = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        await response.prepare(request)
        servers.sent["/endless.pdf"] = 0
        try:
            while True:
                await response.write(b"0" * 16384)
                servers.sent["/endless.pdf"] += 16384
                await asyncio.sleep(0.001)
        except (ConnectionError, RuntimeError):
            return response

    async def slow(request: web.Request) -> web.Response:
        """Answers after 5 seconds, unless the client gives up first."""
        for _ in range(100):
            await asyncio.sleep(0.05)
            if request.transport is None or request.transport.is_closing():
                break
        return web.Response(body=PDF, content_type="application/pdf")

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        servers.origin_hits.append(request.path)
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(middlewares=[record])
    app.router.add_get("/report.pdf", report)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/hop/{n}", hop)
    app.router.add_get("/page.pdf", page)
    app.router.add_get("/big.pdf", big)
    app.router.add_get("/endless.pdf", endless)
    app.router.add_get("/slow.pdf", slow)
    return app


def _secret_app(servers: Servers) -> web.Application:
    async def anything(request: web.Request) -> web.Response:
        servers.secret_hits.append(request.path)
        return web.Response(body=PDF, content_type="application/pdf")

    app = web.Application()
    app.router.add_get("/{tail:.*}", anything)
    return app


@contextmanager
def media_servers(directory: Path) -> Iterator[Servers]:
    cert_file, key_file, pem = _certificate(directory)
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(cert_file, key_file)
    servers = Servers(free_port(), free_port(), ssl.create_default_context(cadata=pem.decode()))
    runners = [
        web.AppRunner(_origin_app(servers), access_log=None, shutdown_timeout=0.5),
        web.AppRunner(_secret_app(servers), access_log=None, shutdown_timeout=0.5),
    ]
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        for runner, host, port in zip(
            runners, (ORIGIN_ADDRESS, "127.0.0.1"), (servers.origin_port, servers.secret_port), strict=True
        ):
            await runner.setup()
            await web.TCPSite(runner, host, port, ssl_context=serving).start()
        started.set()
        await stop.wait()
        for runner in runners:
            await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10), "the media servers did not start"
    try:
        yield servers
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
