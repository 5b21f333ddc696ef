"""OTLP/HTTP trace export (`http/protobuf`) with aiohttp, configured by the standard variables.

Endpoint: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, else `OTEL_EXPORTER_OTLP_ENDPOINT` +
`/v1/traces`, else `http://localhost:4318/v1/traces`; headers, timeout (seconds, as the Python
SDK reads it), compression and certificates from the `OTEL_EXPORTER_OTLP_(TRACES_)*` variables,
the traces-specific one first. A POST runs on the server's event loop and never holds up a run:
a collector that is down only costs the batch. A 429, 502, 503 or 504, or a connection that
fails, is retried twice with backoff; failures are logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import random
import ssl
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:  # aiohttp is imported on first use (engine/outbound_resolvers.py says why)
    import aiohttp


log = logging.getLogger("promptdeck.traces")

DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"
RETRYABLE = frozenset({429, 502, 503, 504})
RETRIES = 2
BACKOFF_SECONDS = 0.5
LOG_EVERY_SECONDS = 60.0


def _setting(environ: Mapping[str, str], name: str) -> str:
    """`OTEL_EXPORTER_OTLP_TRACES_<name>`, else `OTEL_EXPORTER_OTLP_<name>`, else ""."""
    return (
        environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or environ.get(f"OTEL_EXPORTER_OTLP_{name}") or ""
    ).strip()


def endpoint(environ: Mapping[str, str]) -> str:
    if traces := environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
        return traces
    if base := environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        return base.rstrip("/") + "/v1/traces"
    return DEFAULT_ENDPOINT


def headers(value: str) -> dict[str, str]:
    """`k=v,k2=v2`, each name and value URL-decoded; an entry without `=` is skipped."""
    found: dict[str, str] = {}
    for entry in value.split(","):
        name, equals, text = entry.partition("=")
        if equals and name.strip():
            found[unquote(name.strip())] = unquote(text.strip())
    return found


class OtlpHttpExporter:
    """Posts encoded `ExportTraceServiceRequest`s to one OTLP/HTTP endpoint, over one session."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.url = endpoint(environ)
        self.headers = {"Content-Type": "application/x-protobuf"} | headers(_setting(environ, "HEADERS"))
        self.timeout = _seconds(_setting(environ, "TIMEOUT"), 10.0)
        compression = _setting(environ, "COMPRESSION").lower()
        if compression not in ("", "none", "gzip"):
            log.warning("OTEL_EXPORTER_OTLP_COMPRESSION=%s: sending uncompressed", compression)
        self.gzip = compression == "gzip"
        if self.gzip:
            self.headers["Content-Encoding"] = "gzip"
        self._ssl: ssl.SSLContext | bool = _ssl_context(environ) or True
        self._session: aiohttp.ClientSession | None = None
        self._logged_at = -LOG_EVERY_SECONDS
        self._unlogged = 0

    async def send(self, body: bytes, *, retry: bool = True) -> bool:
        """Post one request; True when the collector took it."""
        import aiohttp

        if self.gzip:
            body = await asyncio.to_thread(gzip.compress, body)  # zlib lets the loop run meanwhile
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        problem = ""
        for attempt in range(RETRIES + 1 if retry else 1):
            if attempt:
                await asyncio.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1) * (0.5 + random.random()))
            try:
                async with self._session.post(
                    self.url, data=body, headers=self.headers, ssl=self._ssl
                ) as response:
                    await response.read()
                    if response.status < 300:
                        return True
                    problem = f"HTTP {response.status}"
                    if response.status not in RETRYABLE:
                        break
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                problem = f"{type(error).__name__}: {error}"
        self._log_failure(problem)
        return False

    def _log_failure(self, problem: str) -> None:
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY_SECONDS:
            self._unlogged += 1
            return
        log.warning(
            "could not export spans to %s (%s)%s",
            self.url,
            problem,
            f"; {self._unlogged} more exports failed since the last warning" if self._unlogged else "",
        )
        self._logged_at, self._unlogged = now, 0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _seconds(value: str, default: float) -> float:
    try:
        seconds = float(value) if value else default
    except ValueError:
        seconds = default
    return seconds if seconds > 0 else default


def _ssl_context(environ: Mapping[str, str]) -> ssl.SSLContext | None:
    """A CA file (`…_CERTIFICATE`) and a client certificate and key, when given."""
    ca, cert, key = (_setting(environ, name) for name in ("CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY"))
    if not (ca or cert):
        return None
    context = ssl.create_default_context(cafile=ca or None)
    if cert:
        context.load_cert_chain(cert, key or None)
    return context
