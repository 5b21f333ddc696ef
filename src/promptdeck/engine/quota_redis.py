"""Rate-limit and budget counters in Redis (or Valkey), shared by every replica (docs/governance.md).

Each step is one EVALSHA of a Lua script over all the keys it touches, so it is atomic across
replicas: N replicas enforce one limit, not N. A call is admitted by one script before it
(`admit`: every window and budget of the call), which also carries the calls that came while
the previous one was on its way (engine/batched_calls.py: one round trip for many concurrent
calls); settlements travel many calls at a time in one script (`settle`, sent by
engine/quota_settler.py). The scripts are engine/quota_scripts.py. The semantics are
engine/quota_backend.py's, the same as engine/quota_memory.py's, on the Redis server's clock
(`TIME`), so replicas agree on windows whatever their own clocks say.

Keys, all under `promptdeck:quota:`, each with an expiry so nothing lives forever:

* `requests:<window>`: a sorted set of the admitted calls' times; gone 61 s after its last call.
* `token-window:<window>`: a hash of whole seconds to tokens counted in them, with their running
  `total` and the `oldest` and `newest` seconds held; gone 61 s after its last count. (Named anew
  when the total was added: a replica of the version before, which kept only the seconds, reads
  and writes the old `tokens:` keys, so during an upgrade the two count apart for a minute rather
  than misread each other.)
* `budget:<counter>`: a hash with the `settled` spend, the `reserved` total of its holds, the
  `earliest` time a hold may be released, its period's end (`expires`) and one
  `hold:<reservation id>` field per call in flight ("amount release-time"); created by `seed`,
  gone at the end of its period.

The scripts touch several keys at once, so every key of a call must live on one server: a
standalone Redis or Valkey (with replicas or Sentinel), not a Cluster. Every request has a short
time limit; any Redis failure raises `QuotaStoreUnavailable`, and the governor applies the
configured fail policy. After a failure, calls skip Redis for `QUIET_SECONDS` (failing at once
instead of each waiting for a time-out), then try it again. The client is redis-py with hiredis
(its C reply parser), calling EVALSHA straight rather than through redis-py's `Script`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptdeck.engine.batched_calls import BatchedCalls
from promptdeck.engine.quota_backend import (
    ADMITTED_WITHOUT_LIMITS,
    HOLD_SECONDS,
    WINDOW_SECONDS,
    Admission,
    BudgetCounter,
    BudgetRefusal,
    QuotaStoreUnavailable,
    Reservation,
    Settlement,
    Spend,
    UniqueIds,
    Window,
)
from promptdeck.engine.quota_scripts import ADMIT, SEED, SETTLE, SPEND

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection, ConnectionPool

_AdmitCall = tuple[list[str], str]  # one call's keys and its argument in the ADMIT script

PREFIX = "promptdeck:quota:"
REQUESTS, TOKENS, BUDGET = PREFIX + "requests:", PREFIX + "token-window:", PREFIX + "budget:"
REDIS_TIMEOUT = 0.25  # seconds to connect or for one script; a slower Redis counts as unreachable
MAX_CONNECTIONS = 64  # per replica; a script takes well under a millisecond, so few are busy
POOL_WAIT_SECONDS = 1.0  # how long a call waits for a free connection before it counts as a failure
QUIET_SECONDS = 1.0  # after a failure, calls fail at once for this long before Redis is tried again
WINDOW_TTL_MS = int((WINDOW_SECONDS + 1) * 1000)  # a window's key outlives its last use by this
EPSILON_USD = 1e-9  # float sums: a spend equal to its cap must fit
MAX_PREPARED = 10_000  # combinations of windows and counters kept prepared (then forgotten at once)


@dataclass(slots=True)
class _Prepared:
    """One combination of windows and counters as the ADMIT script takes it (its keys, and its
    fields but a call's own), made once: the governor passes its plan's same tuples call after
    call, so they are found by identity. `sequences` keeps them alive, so no other sequence can
    take their ids while the entry lives."""

    sequences: tuple[Sequence[Window], Sequence[Window], Sequence[BudgetCounter]]
    keys: list[str]
    counts: str  # request windows, token windows, counters
    limits: str  # each window's limit, then each counter's cap


class RedisQuotas:
    """The `QuotaBackend` every replica shares."""

    def __init__(
        self, url: str, *, timeout: float = REDIS_TIMEOUT, clock: Callable[[], float] | None = None
    ) -> None:
        import redis.asyncio as aioredis  # here: redis-py costs ~14 MB, and most servers use none
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import NoScriptError, RedisError

        self.url = url
        self._clock = clock  # None: the Redis server's clock (tests move one of their own)
        # One retry at once: a pooled connection a restarted Redis closed is opened again.
        # At most MAX_CONNECTIONS at once: more concurrent calls wait for one (a burst, not a fault).
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_WAIT_SECONDS,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self._redis: Redis = aioredis.Redis.from_pool(pool)
        self._pool = pool
        # Own connections, outside the pool (`_OwnConnection`): one for admissions (a batch at a
        # time), one for settlements (the settler's batches; a rare inline one waits its turn).
        self._admitting = _OwnConnection(pool, exclusive=False)
        self._settling = _OwnConnection(pool, exclusive=True)
        self._failures = (RedisError, OSError)
        self._no_script = NoScriptError
        self._quiet_until = 0.0
        self._sha: dict[str, str] = {}  # script: its SHA1, once Redis has it
        self._members = UniqueIds()
        self._prepared: dict[tuple[int, int, int], _Prepared] = {}  # by the sequences' identity
        # Calls admitted while a script is on its way go together in the next one.
        self._admits: BatchedCalls[_AdmitCall, list[Any]] = BatchedCalls(self._admit_batch)

    async def admit(
        self,
        requests: Sequence[Window],
        tokens: Sequence[Window],
        counters: Sequence[BudgetCounter] = (),
        amount_usd: float = 0.0,
        *,
        reservation_id: str = "",
        hold_seconds: float = HOLD_SECONDS,
    ) -> Admission:
        if amount_usd <= 0:
            counters = ()  # never refused, and nothing to hold
        if not requests and not tokens and not counters:
            return ADMITTED_WITHOUT_LIMITS
        prepared = self._prepared.get((id(requests), id(tokens), id(counters)))
        if prepared is None:
            prepared = self._prepare(requests, tokens, counters)
        amount = repr(amount_usd) if counters else "0"
        member, rid = self._members.next(), reservation_id or "-"
        fields = f"{prepared.counts} {member} {amount} {hold_seconds!r} {rid} {prepared.limits}"
        found = await self._admits.submit((prepared.keys, fields))
        verdict = int(found[0])
        if verdict == 1:
            reservation = Reservation(reservation_id, tuple(counters), amount_usd) if counters else None
            return Admission(True, int(found[1]), int(found[2]), float(found[3]), reservation=reservation)
        if verdict == 0:
            windows = [*requests, *tokens]
            key = windows[int(found[5]) - 1].key
            return Admission(False, int(found[1]), 0, float(found[3]), float(found[4]), key)
        if verdict == 3:
            refusal = BudgetRefusal(counters[int(found[1]) - 1], float(found[2]), float(found[3]))
            return Admission(False, 0, 0, 0.0, budget=refusal)
        return Admission(False, 0, 0, 0.0, unseeded=tuple(counters[int(i) - 1] for i in found[1:]))

    async def settle(self, settlements: Sequence[Settlement]) -> None:
        keys: list[str] = []
        args: list[Any] = [WINDOW_SECONDS, WINDOW_TTL_MS]
        for settlement in settlements:
            token_keys = settlement.token_keys if settlement.tokens > 0 else ()
            counters = settlement.reservation.counters if settlement.reservation is not None else ()
            if not token_keys and not counters:
                continue
            keys += [TOKENS + k for k in token_keys]
            keys += [BUDGET + c.key for c in counters]
            rid = settlement.reservation.id if settlement.reservation is not None else ""
            args += [len(token_keys), settlement.tokens, len(counters), rid]
            args.append(repr(max(settlement.actual_usd, 0.0)))
            args += [repr(c.expires_at) for c in counters]
        if keys:
            await self._run(SETTLE, keys, args, on=self._settling)

    async def seed(self, spends: Sequence[tuple[BudgetCounter, float]]) -> list[bool]:
        if not spends:
            return []
        args: list[Any] = []
        for counter, spent_usd in spends:
            args += [repr(max(spent_usd, 0.0)), repr(counter.expires_at)]
        done = await self._run(SEED, [BUDGET + c.key for c, _ in spends], args)
        return [bool(int(x)) for x in done]

    async def spend(self, keys: Sequence[str]) -> Mapping[str, Spend]:
        if not keys:
            return {}
        found = await self._run(SPEND, [BUDGET + k for k in keys], [])
        return {key: Spend(float(found[2 * i]), float(found[2 * i + 1])) for i, key in enumerate(keys)}

    def _prepare(
        self, requests: Sequence[Window], tokens: Sequence[Window], counters: Sequence[BudgetCounter]
    ) -> _Prepared:
        if len(self._prepared) >= MAX_PREPARED:
            self._prepared.clear()
        prepared = self._prepared[(id(requests), id(tokens), id(counters))] = _Prepared(
            (requests, tokens, counters),
            [REQUESTS + w.key for w in requests]
            + [TOKENS + w.key for w in tokens]
            + [BUDGET + c.key for c in counters],
            f"{len(requests)} {len(tokens)} {len(counters)}",
            " ".join([*(str(w.limit) for w in (*requests, *tokens)), *(repr(c.cap_usd) for c in counters)]),
        )
        return prepared

    async def aclose(self) -> None:
        await self._admits.aclose()
        await self._admitting.close()
        await self._settling.close()
        await self._redis.aclose()

    async def _admit_batch(self, calls: list[_AdmitCall]) -> list[list[Any]]:
        keys: list[str] = []
        args: list[Any] = [WINDOW_SECONDS, WINDOW_TTL_MS, EPSILON_USD]
        for call_keys, call_fields in calls:
            keys += call_keys
            args.append(call_fields)
        found: list[list[Any]] = await self._run(ADMIT, keys, args, on=self._admitting)
        return found

    async def _run(
        self, script: str, keys: list[str], args: list[Any], *, on: _OwnConnection | None = None
    ) -> Any:
        """One EVALSHA (the script is loaded first, and again if Redis lost it, e.g. after a
        restart). Called straight, not through redis-py's `Script`: it costs less per call.
        `on`: one of our own connections rather than the pool's."""
        if time.monotonic() < self._quiet_until:
            raise QuotaStoreUnavailable("Redis failed a moment ago; it is tried again shortly")
        now = "" if self._clock is None else repr(self._clock())
        try:
            sha = self._sha.get(script)
            if sha is not None:
                try:
                    return await self._evalsha(on, sha, keys, now, args)
                except self._no_script:
                    pass
            sha = self._sha[script] = await self._redis.script_load(script)
            return await self._evalsha(on, sha, keys, now, args)
        except self._failures as exc:
            self._quiet_until = time.monotonic() + QUIET_SECONDS
            raise QuotaStoreUnavailable(f"Redis at {_where(self.url)} did not answer: {exc}") from exc

    async def _evalsha(
        self, on: _OwnConnection | None, sha: str, keys: list[str], now: str, args: list[Any]
    ) -> Any:
        if on is not None:
            return await on.call(("EVALSHA", sha, len(keys), *keys, now, *args))
        command = self._redis.execute_command  # untyped in redis-py
        return await command("EVALSHA", sha, len(keys), *keys, now, *args)  # type: ignore[no-untyped-call]


class _OwnConnection:
    """A redis-py connection of our own, outside the pool, for the steps every call takes.
    Skipping the client and the pool (their locks, retries and bookkeeping) saves ~25 µs a
    script, and packing the command in one hiredis call rather than redis-py's per-argument
    encoding ~5 µs a call (docs/performance.md). A connection Redis closed is opened again once,
    as the pool's retry does; one that failed midway (a time-out, a cancel) is dropped, its
    answer unread. `exclusive`: callers take turns (a lock); otherwise the caller ensures one
    step at a time, as `BatchedCalls` does for admissions."""

    def __init__(self, pool: ConnectionPool, *, exclusive: bool) -> None:
        from hiredis import pack_command
        from redis.exceptions import ConnectionError, NoScriptError

        self._pool = pool
        self._pack = pack_command  # every argument is a str, an int or a float
        self._connection_lost = ConnectionError
        self._no_script = NoScriptError
        self._connection: AbstractConnection | None = None
        self._turns: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if exclusive else contextlib.nullcontext()
        )

    async def call(self, command: tuple[Any, ...]) -> Any:
        async with self._turns:
            packed = self._pack(command)
            for may_retry in (True, False):
                connection = self._connection or self._pool.connection_class(**self._pool.connection_kwargs)
                self._connection = connection
                try:
                    await connection.send_packed_command(packed, check_health=False)
                    return await connection.read_response()
                except self._no_script:
                    raise  # answered: the connection is fine
                except BaseException as exc:
                    self._connection = None
                    await connection.disconnect()
                    if not (may_retry and isinstance(exc, self._connection_lost)):
                        raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.disconnect()
            self._connection = None


def _where(url: str) -> str:
    """The URL without a password, for messages."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"
