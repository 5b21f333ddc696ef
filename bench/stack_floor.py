"""The floor of promptdeck's own serving stack, beside the reference proxy: what a request costs
uvicorn (uvloop, httptools) and promptdeck's upstream client with nothing else on them.

The floor server (`--serve`) is a bare ASGI app under uvicorn configured as `promptdeck serve`
runs it (uvloop, httptools, no access log): it reads the body, posts it to the fake upstream
with `providers/http_client.py`'s client, and writes the answer back (a stream chunk by chunk,
as the reference proxy does). No auth, routing, run, template or log. Whatever promptdeck
spends above it is promptdeck's own Python, not its stack's.

The measurement starts the fake upstream (core 0, with the load generator), the reference proxy
and the floor server (both on core 1), and drives each in turn, `--rounds` times, alternating
the order, with 32 keep-alive callers: non-streaming requests, then 20-chunk streams. It prints
each server's CPU per request (median round, and every round).

    .venv/bin/python bench/stack_floor.py [--requests 8000] [--streams 3000] [--rounds 5]

See bench/README.md, "The stack's floor".
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
from pathlib import Path
from typing import Any

from cpu_meter import process_cpu_ns
from gateway_processes import start_listener, start_proxy, start_upstream, stop_process
from gateway_targets import direct_target
from load_client import HOST, close_all, closed_loop, connect

CALLERS = 32
Message = dict[str, Any]


def floor_app(upstream_url: str) -> Any:
    """The bare ASGI app: the body to the upstream, its answer back."""
    from promptdeck.providers.http_client import UpstreamClient

    client: UpstreamClient | None = None
    json_headers = {"Content-Type": "application/json"}

    async def app(scope: Message, receive: Any, send: Any) -> None:
        nonlocal client
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        client = client or UpstreamClient()
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        answer = await client.post(upstream_url, body, json_headers, connect_timeout=5, silence=30)
        kind = answer.headers.get("content-type", "application/json")
        try:
            if not kind.startswith("text/event-stream"):
                data = await answer.read()
                length = str(len(data)).encode()
                head = [(b"Content-Length", length), (b"Content-Type", kind.encode())]
                await send({"type": "http.response.start", "status": answer.status, "headers": head})
                await send({"type": "http.response.body", "body": data})
                return
            head = [(b"Content-Type", kind.encode())]
            await send({"type": "http.response.start", "status": answer.status, "headers": head})
            async for chunk in answer:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            answer.close()

    return app


def serve(upstream_port: int) -> None:
    """Run the floor server on a free port, printing `listening on <port>`."""
    import uvicorn

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(1024)
    print(f"listening on {listener.getsockname()[1]}", flush=True)
    app = floor_app(f"http://{HOST}:{upstream_port}/v1/chat/completions")
    config = uvicorn.Config(app, loop="uvloop", http="httptools", access_log=False, log_level="warning")
    uvicorn.Server(config).run([listener])


async def cpu_per_request(port: int, pid: int, streamed: bool, count: int) -> float:
    """The server's CPU (µs) per request over `count` requests from 32 callers, after a warm-up."""
    target = direct_target(port, "server", "proxy")
    request = target.streaming if streamed else target.plain
    callers = [await connect(port) for _ in range(CALLERS)]
    try:
        await closed_loop(port, callers, request, 1000, 60, target.framing)
        before = process_cpu_ns(pid)
        tally = await closed_loop(port, callers, request, count, 120, target.framing)
        spent = process_cpu_ns(pid) - before
    finally:
        close_all(callers)
    if tally.errors:
        raise SystemExit(f"{tally.errors} requests failed")
    return spent / count / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=8000, help="non-streaming requests a round")
    parser.add_argument("--streams", type=int, default=3000, help="20-chunk streams a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", type=int, metavar="UPSTREAM_PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    upstream, upstream_port = start_upstream(0, 20, 0.0)
    floor_command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(upstream_port)]
    servers = {
        "reference proxy (aiohttp)": start_proxy(1, upstream_port),
        "promptdeck's stack, bare": start_listener("the floor server", 1, floor_command),
    }
    try:
        for streamed, count in ((False, args.requests), (True, args.streams)):
            figures: dict[str, list[float]] = {name: [] for name in servers}
            for round_number in range(args.rounds):
                order = list(servers.items())
                for name, (process, port) in order if round_number % 2 == 0 else order[::-1]:
                    figures[name].append(asyncio.run(cpu_per_request(port, process.pid, streamed, count)))
            print("20-chunk streams" if streamed else "non-streaming requests", f"({CALLERS} callers)")
            for name, rounds in figures.items():
                every = " ".join(f"{figure:.1f}" for figure in rounds)
                print(f"  {name:28s} {statistics.median(rounds):7.1f} µs CPU a request (rounds: {every})")
    finally:
        for process, _port in servers.values():
            stop_process(process)
        stop_process(upstream)


if __name__ == "__main__":
    main()
