"""One run, from `Engine.start` until the writer has it.

The engine owns the run's lifecycle. An `Invocation` is an async context manager; closing it
records the run exactly once, whatever happened: answered, failed, cut short mid-stream, or
never read at all (a caller that left before the first byte, so no response body was ever
iterated). Dialects close it by `async with` (non-streamed) or through the streamed response
(`surfaces/http.RunResponse`), and the engine closes whatever is still open at shutdown.
docs/architecture.md says why a context manager rather than a supervised task.

Everything a dialect encodes travels in the events (`Started` names who answers; `Finished`
carries usage, cost, stop reason and duration) or in the immutable `ResolvedRun`; the
`RunRecord` the log keeps is the engine's own and changes as the run goes.

Between the first event and the last sit the variant's reliability rules: each candidate (the
variant's model, then its fallbacks) is tried in turn, retryable failures are retried with
backoff, a circuit breaker skips upstreams that keep failing, and nothing is ever retried once
an event has reached the caller.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import replace
from types import AsyncGeneratorType, TracebackType
from typing import TYPE_CHECKING, Any

from promptdeck.domain.answers import Answer, AnswerFold, ResolvedRun
from promptdeck.domain.deployments import Version
from promptdeck.domain.errors import (
    CONTEXT_LENGTH_EXCEEDED,
    ContextLengthExceeded,
    PromptdeckError,
    ProviderFailed,
    RateLimited,
)
from promptdeck.domain.events import (
    Event,
    Failed,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    Usage,
)
from promptdeck.domain.prices import Price
from promptdeck.domain.reliability import VariantConfig
from promptdeck.domain.runs import ERROR, RunRecord
from promptdeck.domain.values import immutable
from promptdeck.providers.base import Provider, ProviderCall

if TYPE_CHECKING:
    from promptdeck.engine.invoke import Engine, InvokeRequest
    from promptdeck.engine.pricing import PriceList
    from promptdeck.engine.quota_governor import Hold

CANCELLED = "cancelled"
UPSTREAM_TIMEOUT = "upstream_timeout"
UPSTREAM_RATE_LIMITED = "upstream_rate_limited"
CHARS_PER_TOKEN = 4  # for estimates only, when an upstream reports no usage
GONE = "the caller went away before the run ended"


@immutable
class Candidate:
    """One way to answer: a provider, the exact call, the model id and version it stands for."""

    provider: Provider
    call: ProviderCall
    model_id: str
    version: Version
    messages: list[dict[str, Any]]
    fallback: int = 0  # 0: the variant's own model; n: its n-th fallback

    workspace_id: str = ""
    prompt_chars: int = 0  # its messages' characters, for token estimates: counted once

    @property
    def upstream(self) -> str:
        """What a circuit breaker guards: one workspace's calls to a provider at one URL. Per
        workspace, so one workspace's failing credential or URL never opens another's circuit."""
        url = (self.call.raw_overrides or {}).get("url") or self.call.base_url or ""
        return f"{self.workspace_id}|{self.provider.name}|{url}"


class Invocation:
    """One run. Read `events()` (streamed) or `answer()` (not), at most once; always close."""

    def __init__(
        self,
        record: RunRecord,
        candidates: list[Candidate],
        config: VariantConfig,
        engine: Engine,
        overrides: dict[str, Price],
        started: float,
        request: InvokeRequest,
    ) -> None:
        self.record = record  # the engine's: dialects read `run` and the events instead
        self.run = ResolvedRun(
            id=record.id,
            request_id=record.request_id,
            created_at=record.created_at,
            deployment=record.deployment,
            variant=record.variant,
            model=record.model,
            provider=record.provider,
            version_id=record.version_id,
            version_number=record.version_number,
            input_chars=candidates[0].prompt_chars,  # record.messages are the first's
        )
        self._candidates = candidates
        self._config = config
        self._engine = engine
        self._overrides = overrides
        self._started = started
        self._fold = AnswerFold(self.run)
        self._usage: Usage | None = None
        self._reader: AsyncGeneratorType[Event, None] | None = None
        self._read = False
        self._ended = False  # a Finished or Failed event went out
        self._closed = False
        self._whole: Answer | None = None  # the answer as it ended, once closed
        self._after_close: list[Callable[[], None]] = []
        self._attempts: list[dict[str, Any]] = []
        self._trying: tuple[Candidate, int, float] | None = None  # the attempt under way, not yet noted
        self._priced_as: str | None = None
        self.request = request
        self._replay: tuple[Event, ...] | None = None  # a response cache hit's answer
        self.hold: Hold | None = None  # its rate limits' and budgets' hold, settled on close

    async def __aenter__(self) -> Invocation:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    def after_close(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the run is with the writer (e.g. to release an external id)."""
        self._after_close.append(callback)

    def replay(self, events: tuple[Event, ...]) -> None:
        """Answer with these stored events (a response cache hit) instead of any provider: no
        call, no circuit breaker, and the run costs nothing (engine/response_cache.py)."""
        self._replay = events

    def events(self) -> AsyncGenerator[Event, None]:
        """The answer's events, recorded as they pass. Ends after `Finished` or `Failed`."""
        if self._read:
            raise RuntimeError("an invocation's events can be read once")
        self._read = True
        reader = self._events()
        assert isinstance(reader, AsyncGeneratorType)
        self._reader = reader
        return reader

    async def answer(self) -> Answer:
        """Run to the end and return the whole answer (the non-streaming path)."""
        async for _ in self.events():
            pass
        assert self._whole is not None  # the reader closed the run as it ended
        return self._whole

    @property
    def ended(self) -> bool:
        """A `Finished` or `Failed` event has gone out: what is left to send waits on nothing."""
        return self._ended

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self._started) * 1000

    async def close(self) -> None:
        """Record the run, once. A run that has not ended was cut short: it is `cancelled`."""
        if self._closed:
            return
        self._closed = True
        reader, self._reader = self._reader, None  # the reader refers to this invocation: no cycle left
        if reader is not None and not reader.ag_running:
            await reader.aclose()  # a reader left half-way: end its upstream call here
        record = self.record
        if not self._ended:
            cut = Failed(CANCELLED, GONE, duration_ms=self.elapsed_ms())
            record.status, record.error_code, record.error_message = ERROR, cut.code, cut.message
            self._fold.add(cut)
            if self._trying is not None:  # the attempt under way ends here too
                candidate, attempt, began = self._trying
                self._engine.breakers.released(candidate.upstream)
                self._note(candidate, attempt, cut, time.perf_counter() - began)
        answer = self._whole = self._fold.answer()
        record.output, record.reasoning = answer.text, answer.reasoning
        record.tool_calls = [call.as_dict() for call in answer.tool_calls] or None
        record.attempts = self._attempts or None
        record.duration_ms = answer.duration_ms
        self._engine.open_runs.discard(self)
        try:
            await self._engine.record_run(record, self.request)
        finally:
            if self.hold is not None and self._engine.governor is not None:
                await self._engine.governor.settle(self.hold, *self._spent(self.hold))
            for callback in self._after_close:
                callback()

    async def _events(self) -> AsyncGenerator[Event, None]:
        record = self.record
        fold = self._fold
        try:
            # Read to its end, not left after the last event: the generators below then finish
            # by returning, which costs far less than closing them (an exception thrown through
            # each frame, or, unclosed, a task the event loop schedules per run). `aclosing` is
            # for a reader cut short.
            source = self._answer() if self._replay is None else self._replayed()
            async with aclosing(source) as answers:
                async for event in answers:
                    if self._ended:  # nothing follows the end (`_answer` sends nothing after it)
                        continue
                    if isinstance(event, TextDelta | ReasoningDelta):
                        if record.ttft_ms is None:
                            record.ttft_ms = self.elapsed_ms()
                    elif isinstance(event, Started):
                        record.model = event.model
                    elif isinstance(event, Usage):
                        self._usage = event
                        self._account(event)
                    elif isinstance(event, Finished):
                        if _missing(self._usage, fold.text, fold.reasoning):  # none reported: count, say so
                            self._usage = self._estimate("".join(fold.text) + "".join(fold.reasoning))
                            self._account(self._usage)
                            fold.add(self._usage)
                            yield self._usage
                        event = Finished(  # not `dataclasses.replace`, which costs ~5 µs
                            event.stop_reason,
                            event.raw,
                            self._usage,
                            record.cost,
                            record.price_known,
                            self.elapsed_ms(),
                            record.ttft_ms,
                        )
                        record.stop_reason = event.stop_reason
                        self._ended = True
                    elif isinstance(event, Failed):
                        event = replace(event, duration_ms=self.elapsed_ms())
                        record.status, record.error_code, record.error_message = (
                            ERROR,
                            event.code,
                            event.message,
                        )
                        self._ended = True
                    fold.add(event)
                    yield event
        finally:
            await self.close()

    async def _replayed(self) -> AsyncGenerator[Event, None]:
        """The stored answer, with `Started` naming this run's provider and version."""
        record = self.record
        for event in self._replay or ():
            if isinstance(event, Started):
                event = Started(
                    event.model, record.provider, record.version_id, record.version_number, self.elapsed_ms()
                )
            yield event

    # ── retries, fallbacks, breakers ─────────────────────────────────────────

    async def _answer(self) -> AsyncGenerator[Event, None]:
        """Try each candidate in turn until one answers; nothing already sent is sent twice."""
        config, breakers = self._config, self._engine.breakers
        last = Failed("provider_error", "no model could be called for this variant")
        for candidate in self._candidates:
            for attempt in range(1, config.max_attempts + 1):
                if not breakers.allows(candidate.upstream):
                    last = Failed(
                        "circuit_open",
                        f"{candidate.provider.name} failed {breakers.threshold} times in a row, so "
                        f"promptdeck stops calling it for {breakers.cooldown:g} s; last failure: "
                        f"{breakers.why_open(candidate.upstream)}",
                        retryable=True,
                    )
                    self._note(candidate, attempt, last, 0.0)
                    break
                began = time.perf_counter()
                self._trying = (candidate, attempt, began)
                held: Started | None = None  # sent only once the attempt has something to say
                sent = False
                failure: Failed | None = None
                finished = False
                async with aclosing(self._timed(candidate)) as events:  # the upstream call ends here
                    try:
                        async for event in events:
                            if finished:  # the provider ends by itself after `Finished` (see `_events`)
                                continue
                            if isinstance(event, Failed):
                                failure = event
                                break
                            if isinstance(event, Started):
                                held = event
                                continue
                            if not sent:
                                sent = True
                                yield self._serving(candidate, held)
                            if isinstance(event, Finished):  # settled first: the caller stops at it
                                breakers.succeeded(candidate.upstream)
                                self._note(candidate, attempt, None, time.perf_counter() - began)
                                finished = True
                            yield event
                    except Exception as exc:  # a provider that raises instead of failing cleanly
                        if not finished:
                            failure = Failed("provider_error", f"the provider failed unexpectedly: {exc}")
                if finished:
                    return
                failure = failure or Failed(
                    "provider_error", f"{candidate.provider.name} ended without an answer"
                )
                self._note(candidate, attempt, failure, time.perf_counter() - began)
                if failure.retryable or failure.code == UPSTREAM_TIMEOUT:  # a silent upstream counts
                    breakers.failed(candidate.upstream, failure.message)
                else:
                    breakers.released(candidate.upstream)
                if sent:  # the caller already has part of this answer: it cannot be redone
                    yield failure
                    return
                last = failure
                delay = backoff_delay(config, attempt, failure)
                if delay is None or attempt == config.max_attempts:
                    break
                await asyncio.sleep(delay)
        yield last

    def _timed(self, candidate: Candidate) -> AsyncGenerator[Event, None]:
        """The provider's events within the variant's first-byte and total limits (the
        provider's own generator when the variant sets none: one frame fewer per event)."""
        config = self._config
        first_byte = config.first_byte_timeout if candidate.call.stream else None
        events = candidate.provider.stream(candidate.call)
        if first_byte is None and config.total_timeout is None and isinstance(events, AsyncGeneratorType):
            return events
        return self._limited(events, first_byte, config.total_timeout, candidate.provider.name)

    async def _limited(
        self, events: AsyncIterator[Event], first_byte: float | None, total: float | None, name: str
    ) -> AsyncGenerator[Event, None]:
        deadline = time.monotonic() + total if total else None
        first = True
        try:
            while True:
                limits = [
                    x for x in (first_byte if first else None, deadline and deadline - time.monotonic()) if x
                ]
                try:
                    event = (
                        await asyncio.wait_for(anext(events), min(limits)) if limits else await anext(events)
                    )
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    which = "first byte" if first and first_byte else "total"
                    yield Failed(
                        UPSTREAM_TIMEOUT,
                        f"{name} gave no answer within the variant's {which} time limit",
                        retryable=first,
                    )
                    return
                first = False
                yield event
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    def _note(self, candidate: Candidate, attempt: int, failure: Failed | None, seconds: float) -> None:
        self._trying = None
        began_ms = (time.perf_counter() - self._started - seconds) * 1000  # after the run's start
        self._attempts.append(
            {
                "provider": candidate.provider.name,
                "model": candidate.model_id,
                "fallback": candidate.fallback,
                "attempt": attempt,
                "status": "error" if failure else "success",
                "error_code": failure.code if failure else None,
                "error": failure.message if failure else None,
                "duration_ms": round(seconds * 1000, 3),
                "began_ms": round(max(began_ms, 0.0), 3),
            }
        )

    def _serving(self, candidate: Candidate, said: Started | None) -> Started:
        """This candidate's answer is reaching the caller: the run is its run, and `Started`
        says so (the model the upstream named, else the candidate's; the version it serves)."""
        record = self.record
        record.provider = candidate.provider.name
        self._priced_as = candidate.model_id
        if candidate.version.id != record.version_id:  # a fallback with its own version answered
            stamp_version(record, candidate.version)
            record.messages = candidate.messages
        return Started(
            said.model if said is not None else candidate.model_id,
            provider=candidate.provider.name,
            version_id=record.version_id,
            version_number=record.version_number,
            elapsed_ms=self.elapsed_ms(),
        )

    # ── usage and cost ───────────────────────────────────────────────────────

    def _spent(self, hold: Hold) -> tuple[float, int]:
        """(USD, tokens) the run used, for its budgets and token limits. A run cut short before
        its upstream reported usage is estimated from what it sent and received; a price that
        cannot be known costs what was reserved."""
        record = self.record
        if record.cost is not None or self._usage is not None:  # the upstream reported usage
            cost, tokens = record.cost, (record.input_tokens or 0) + (record.output_tokens or 0)
        elif not self._attempts:  # no upstream was called (a cache hit, or never read)
            return 0.0, 0
        else:
            usage = self._estimate("".join(self._fold.text) + "".join(self._fold.reasoning))
            model_ids = (self._priced_as or self._candidates[0].model_id,)
            cost, tokens = price_usage(self._engine.prices, self._overrides, model_ids, usage)[0], usage.total
        if cost is None:
            cost = hold.reservation.amount_usd if hold.reservation is not None else 0.0
        return cost, tokens

    def _estimate(self, output: str) -> Usage:
        prompt = self.run.input_chars
        return Usage(
            input=math.ceil(prompt / CHARS_PER_TOKEN),
            output=math.ceil(len(output) / CHARS_PER_TOKEN),
            estimated=True,
        )

    def _account(self, usage: Usage) -> None:
        record = self.record
        record.input_tokens, record.cached_input_tokens = usage.input, usage.cached_input
        record.cache_write_input_tokens = usage.cache_write_input
        record.output_tokens, record.reasoning_tokens = usage.output, usage.reasoning
        record.usage_estimated = usage.estimated
        if self._replay is not None:  # a cache hit: the tokens are the original's, the cost none
            record.cost, record.price_known = 0.0, True
            return
        configured = self._priced_as or self._candidates[0].model_id
        # The model the upstream says answered (e.g. Azure's real model behind a deployment
        # name, or a dated snapshot) is priced first; then the model id the version names.
        priced = (record.model, configured) if record.model and record.model != configured else (configured,)
        record.cost, record.price_known = price_usage(self._engine.prices, self._overrides, priced, usage)


def prompt_chars(messages: list[dict[str, Any]] | None) -> int:
    """The characters of a prompt's messages, for token estimates (`CHARS_PER_TOKEN`)."""
    return sum(len(str(m.get("content") or "")) for m in messages or [])


def price_usage(
    prices: PriceList, overrides: dict[str, Price], model_ids: tuple[str, ...], usage: Usage
) -> tuple[float | None, bool]:
    """(cost in USD, whether the price was known) of `usage` on the first of `model_ids` with a
    price; a workspace's override of any of them wins over the price list."""
    override = next((overrides[m] for m in model_ids if m in overrides), None)
    cost, known = None, False
    for model_id in model_ids:
        cost, known = prices.cost(model_id, usage, override)
        if known:
            break
    return cost, known


def caller_error(failed: Failed) -> PromptdeckError:
    """A failed run as the error its caller gets (streamed callers get its `code` in the failure
    event): an upstream's rate limit is the caller's 429 with the upstream's Retry-After; a
    prompt longer than the model's context is the caller's to shorten (400,
    `context_length_exceeded`); any other failure a provider error (502)."""
    if failed.code == UPSTREAM_RATE_LIMITED:
        return RateLimited(failed.message, retry_after=failed.retry_after or 1.0)
    if failed.code == CONTEXT_LENGTH_EXCEEDED:
        return ContextLengthExceeded(failed.message)
    return ProviderFailed(failed.message)


def backoff_delay(config: VariantConfig, attempt: int, failure: Failed) -> float | None:
    """Seconds before the next attempt, or None when this candidate should not be retried."""
    if not failure.retryable:
        return None
    if failure.retry_after is not None:
        return float(failure.retry_after) if failure.retry_after <= config.max_backoff_seconds else None
    delay = min(config.max_backoff_seconds, config.backoff_seconds * 2.0 ** (attempt - 1))
    return delay * (0.5 + random.random() / 2)  # jitter: replicas must not retry in step


def stamp_version(record: RunRecord, version: Version) -> None:
    """The run's version: a saved one's id and number; an unsaved draft has neither."""
    record.version_id, record.version_number = (version.id, version.number) if version.saved else (None, None)


def _missing(usage: Usage | None, text: list[str], reasoning: list[str]) -> bool:
    """No usage, or all zeros for an answer that plainly had words: the upstream did not say."""
    return usage is None or (usage.input == 0 and usage.output == 0 and bool(text or reasoning))
