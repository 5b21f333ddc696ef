"""The reference the gateway benchmark measures promptdeck against: the least a Python proxy
can do on the same stack (aiohttp on uvloop).

`POST /v1/chat/completions`: the body goes to the upstream as it came, unread; a streamed
answer (`text/event-stream`) is written back chunk by chunk as it arrives, any other answer
whole. No auth, no templates, no logging. It prints `listening on <port>` once ready.

    python bench/reference_proxy.py --upstream http://127.0.0.1:8401 [--port 8402]
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import aiohttp
from aiohttp import web

from fake_upstream import run_fast
from load_client import HOST

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


async def forward(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    headers = {"Content-Type": "application/json"}
    async with request.app[SESSION].post(request.app[UPSTREAM], data=body, headers=headers) as upstream:
        kind = upstream.headers.get("Content-Type", "application/json")
        if not kind.startswith("text/event-stream"):
            return web.Response(
                body=await upstream.read(), status=upstream.status, headers={"Content-Type": kind}
            )
        response = web.StreamResponse(status=upstream.status, headers={"Content-Type": kind})
        await response.prepare(request)
        async for data in upstream.content.iter_any():
            await response.write(data)
        await response.write_eof()
        return response


async def serve(port: int, upstream: str) -> None:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/") + "/v1/chat/completions"
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
    app.router.add_post("/v1/chat/completions", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port, backlog=1024)
    await site.start()
    print(f"listening on {runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await app[SESSION].close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8402, help="0 picks a free port (printed)")
    parser.add_argument(
        "--upstream", required=True, help="the upstream's base URL, e.g. http://127.0.0.1:8401"
    )
    args = parser.parse_args()
    run_fast(serve(args.port, args.upstream))


if __name__ == "__main__":
    main()
