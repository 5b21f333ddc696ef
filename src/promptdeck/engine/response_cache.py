"""The response cache: an identical call to a variant that opts in is answered again without
its provider (docs/operations.md, "Response cache").

The key is a hash of exactly what the variant's own provider would be sent (its rendered
payload, streamed or not alike), the version, the provider and model, and where the call would
go. `Engine.start` asks `attach` for a variant whose config has a `cache` section: a hit makes
the `Invocation` replay the stored events, so every dialect answers in its normal shape,
streamed or not; a miss stores the answer when the run has ended complete and well. A caller's
`Cache-Control: no-cache` skips the lookup, and the fresh answer is stored for the next call.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import orjson

from promptdeck.domain.events import Event, Finished, ReasoningDelta, Started, TextDelta, ToolCallDelta, Usage
from promptdeck.domain.reliability import ResponseCaching
from promptdeck.domain.runs import SUCCESS, RunRecord
from promptdeck.engine.invocation import Candidate, Invocation
from promptdeck.engine.response_stores import AnswerStore, CachedAnswer, MemoryStore, RedisStore

if TYPE_CHECKING:
    from promptdeck.engine.invoke import InvokeRequest

log = logging.getLogger("promptdeck.response_cache")

MB = 1024 * 1024


def cache_key(candidate: Candidate, caching: ResponseCaching) -> str | None:
    """The call's key, or None when it may not be cached: a draft (no version id), a temperature
    above 0 (unset counts as above: the providers' default is 1) unless the variant allows it, or
    a caller who asked for the upstream's raw answer (which is not kept)."""
    call = candidate.call
    if candidate.version.id is None or not candidate.version.saved or call.keep_raw:
        return None
    if not caching.when_temperature_above_zero:
        temperature = call.params.get("temperature")
        if not isinstance(temperature, int | float) or temperature > 0:
            return None
    payload = candidate.provider.payload(replace(call, api_key=None, stream=False))
    raw = call.raw_overrides or {}
    material = orjson.dumps(
        [
            candidate.version.id,
            candidate.provider.name,
            candidate.model_id,
            call.base_url,
            raw.get("url"),
            raw.get("headers"),
            payload,
        ],
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )
    return hashlib.blake2b(material, digest_size=20).hexdigest()


def answer_of(record: RunRecord) -> CachedAnswer | None:
    """A run's answer as events, if it is one to keep: it ended well and whole, and the variant's
    own model gave it (a fallback's answer is not the answer to this key's call)."""
    attempts = record.attempts
    if (
        record.status != SUCCESS
        or record.stop_reason is None
        or not attempts
        or attempts[-1].get("fallback") != 0
    ):
        return None
    events: list[Event] = [Started(record.model or "")]
    if record.reasoning:
        events.append(ReasoningDelta(record.reasoning))
    if record.output:
        events.append(TextDelta(record.output))
    for index, call in enumerate(record.tool_calls or ()):
        events.append(ToolCallDelta(index, call.get("id"), call.get("name"), call.get("arguments") or ""))
    events.append(
        Usage(
            record.input_tokens,
            record.cached_input_tokens,
            record.cache_write_input_tokens,
            record.output_tokens,
            record.reasoning_tokens,
            bool(record.usage_estimated),
        )
    )
    events.append(Finished(record.stop_reason))
    return CachedAnswer(tuple(events), record.cost)


class ResponseCache:
    """Looks answers up as runs start and keeps them as they end, in one `AnswerStore`."""

    def __init__(self, store: AnswerStore) -> None:
        self.store = store

    @classmethod
    def build(cls, redis_url: str, memory_mb: float) -> ResponseCache:
        """Redis when a URL is set (replicas share it), else this process's memory."""
        return cls(RedisStore(redis_url) if redis_url else MemoryStore(int(memory_mb * MB)))

    async def attach(
        self, invocation: Invocation, candidate: Candidate, caching: ResponseCaching, request: InvokeRequest
    ) -> None:
        """Make `invocation` a hit (it replays the stored answer) or have its answer kept. Never
        raises: a cache that fails is a miss."""
        try:
            key = cache_key(candidate, caching)
            if key is None:
                return
            record = invocation.record
            found = None if request.no_cache else await self.store.get(key)
            if found is not None:
                record.cache_hit, record.saved_cost = True, found.cost
                invocation.replay(found.events)
                return
            record.cache_hit = False
            if not request.no_store:
                invocation.after_close(lambda: self._keep(key, record, caching.ttl_seconds))
        except Exception:
            log.exception("the response cache failed on run %s; calling the provider", invocation.record.id)

    def _keep(self, key: str, record: RunRecord, ttl: float) -> None:
        try:
            answer = answer_of(record)
            if answer is not None:
                self.store.put(key, answer, ttl)
        except Exception:
            log.exception("the response cache could not keep the answer of run %s", record.id)

    async def aclose(self) -> None:
        await self.store.aclose()
