"""What a response cache hit adds over a direct answer, in the engine (goal: under 0.2 ms).

    .venv/bin/python bench/response_cache.py            # about 10 s
    .venv/bin/python bench/response_cache.py --calls 20000

Both sides run the whole engine in this process — `Engine.start` (resolve, validate, render),
then the answer read whole (non-streamed) or event by event (streamed), and the run handed to
the writer — for the same call of the same version:

* `direct`: a variant without `cache`, whose provider answers at once from memory (the fastest
  answer a provider could give, with no network in the way);
* `hit`: a variant with `cache`, every call a hit in the in-process store: the key (the
  OpenAI provider's real payload, hashed), the lookup and the replayed events;
* `miss`: a caching variant, every call a miss (`Cache-Control: no-cache`): the key and the
  store of the fresh answer on top of `direct`.

`hit - direct` is what a hit adds (negative: a hit is cheaper than even an instant provider).
Medians of `--rounds` rounds of `--calls` calls each, alternating the sides so a busy machine
moves them alike. Nothing leaves the process.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from promptdeck.config import Settings
from promptdeck.domain.deployments import Deployment, Version
from promptdeck.domain.events import Event, Finished, Started, TextDelta, Usage
from promptdeck.domain.prompts import InputSpec, Message, PromptSpec
from promptdeck.domain.reliability import VariantConfig
from promptdeck.engine.auth import Caller
from promptdeck.engine.invoke import Engine, InvokeRequest
from promptdeck.engine.response_cache import ResponseCache
from promptdeck.providers.base import ProviderCall, Providers
from promptdeck.providers.registry import build_providers

TEXT = "The quick brown fox jumps over the lazy dog, and the dog does not mind at all."


class InstantProvider:
    """Answers at once from memory; its payload is the OpenAI provider's, as the key needs."""

    name = "openai"
    free = False
    credential_name = None
    pricing_name = "openai"

    def __init__(self, settings: Settings) -> None:
        real = build_providers(settings).get("openai")
        assert real is not None
        self._real = real

    async def stream(self, call: ProviderCall) -> AsyncIterator[Event]:
        yield Started(call.model)
        yield TextDelta(TEXT)
        yield Usage(input=42, output=18)
        yield Finished("stop")

    def payload(self, call: ProviderCall) -> dict[str, Any]:
        return self._real.payload(call)

    async def aclose(self) -> None:
        await self._real.aclose()


class NoWriter:
    """The run log's writer, without a database: both sides hand it the same run."""

    async def put(self, record: Any) -> None:
        return None


class NoOverrides:
    async def all(self, workspace_id: str) -> dict[str, Any]:
        return {}


def deployment(cache: bool) -> Deployment:
    spec = PromptSpec(
        model="openai/gpt-4o-mini",
        messages=(
            Message("system", "You summarize text in one sentence for {{audience}}."),
            Message("user", "Summarize: {{text}}"),
        ),
        params={"temperature": 0, "max_tokens": 64},
        inputs={"text": InputSpec(), "audience": InputSpec()},
    )
    version = Version("v" * 32, "p" * 32, "bench", 1, spec, "", "bench", datetime.now(UTC))
    config = VariantConfig.model_validate({"cache": {"ttl_seconds": 3600}} if cache else {})
    return Deployment("d" * 32, "w", "bench", "p" * 32, "default", {"default": version}, {"default": config})


async def one(engine: Engine, request: InvokeRequest, snapshot: Deployment) -> float:
    began = time.perf_counter()
    invocation = await engine.start(request, snapshot)
    async with invocation:
        if request.stream:
            async for _ in invocation.events():
                pass
        else:
            await invocation.answer()
    return time.perf_counter() - began


async def measure(calls: int, rounds: int, stream: bool) -> dict[str, float]:
    settings = Settings(data_dir="/tmp/promptdeck-bench-cache", openai_api_key="bench")
    instant = InstantProvider(settings)
    engine = Engine(None, Providers([instant]), NoWriter(), 10.0, None, NoOverrides())  # type: ignore[arg-type]
    engine.response_cache = ResponseCache.build("", 64)
    caller = Caller("k", "w", ("invoke",), "bench")
    inputs = {"text": "A fox jumped over a dog. " * 8, "audience": "kids"}
    request = InvokeRequest(caller, "bench", "bench", inputs=inputs, stream=stream)
    fresh = InvokeRequest(caller, "bench", "bench", inputs=inputs, stream=stream, no_cache=True)
    sides = {
        "direct": (request, deployment(cache=False)),
        "hit": (request, deployment(cache=True)),
        "miss": (fresh, deployment(cache=True)),
    }
    for side in sides.values():  # warm up; the first cached call stores the answer
        for _ in range(200):
            await one(engine, *side)
    for name, expected in (("direct", None), ("hit", True), ("miss", False)):  # each side is what it says
        invocation = await engine.start(*sides[name])
        async with invocation:
            await invocation.answer()
        assert invocation.record.cache_hit is expected, name
    medians: dict[str, list[float]] = {name: [] for name in sides}
    gc.collect()
    for _ in range(rounds):
        for name, side in sides.items():
            times = [await one(engine, *side) for _ in range(calls)]
            medians[name].append(statistics.median(times) * 1e6)
    await instant.aclose()
    return {name: statistics.median(values) for name, values in medians.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per side per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for stream in (False, True):
        figures = asyncio.run(measure(args.calls, args.rounds, stream))
        added = figures["hit"] - figures["direct"]
        verdict = "meets" if added < 200 else "MISSES"
        print(
            f"{'streamed' if stream else 'non-streamed'}: direct {figures['direct']:.1f} µs, "
            f"hit {figures['hit']:.1f} µs, miss {figures['miss']:.1f} µs per call (medians); "
            f"a hit adds {added:+.1f} µs ({verdict} the goal of < 200 µs); "
            f"a miss adds {figures['miss'] - figures['direct']:+.1f} µs"
        )


if __name__ == "__main__":
    main()
