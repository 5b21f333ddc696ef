"""An OTLP/HTTP trace receiver for the benchmarks: what a collector on loopback would be.

`POST /v1/traces` takes a protobuf `ExportTraceServiceRequest` (gzip or not), counts its spans
and answers as a collector does; `GET /stats` says how many exports and spans arrived, so a
benchmark can check that traces really left promptdeck. An aiohttp server on uvloop: spans come
in batches (512 at most), so it handles a few requests a second and is never what is measured.

Run it alone: `python bench/otlp_sink.py --port 4318`; it prints `listening on <port>` once
ready (port 0 picks a free one).
"""

from __future__ import annotations

import argparse
import asyncio
import json

import uvloop
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

ANSWER = ExportTraceServiceResponse().SerializeToString()
COUNTS = web.AppKey("counts", dict)


async def traces(request: web.Request) -> web.Response:
    body = await request.read()  # aiohttp undoes a Content-Encoding (gzip) itself
    exported = ExportTraceServiceRequest.FromString(body)
    counts = request.app[COUNTS]
    counts["exports"] += 1
    counts["spans"] += sum(len(s.spans) for r in exported.resource_spans for s in r.scope_spans)
    return web.Response(body=ANSWER, content_type="application/x-protobuf")


async def stats(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps(request.app[COUNTS]), content_type="application/json")


async def serve(host: str, port: int) -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[COUNTS] = {"exports": 0, "spans": 0}
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    print(f"listening on {runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
