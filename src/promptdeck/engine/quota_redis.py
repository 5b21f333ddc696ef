"""Rate-limit and budget counters in Redis (or Valkey), shared by every replica (docs/governance.md).

Each method is one EVALSHA of a Lua script over all the keys of a call, so it is atomic across
replicas: N replicas enforce one limit, not N. The semantics are engine/quota_backend.py's, the
same as engine/quota_memory.py's, on the Redis server's clock (`TIME`), so replicas agree on
windows whatever their own clocks say.

Keys, all under `promptdeck:quota:`, each with an expiry so nothing lives forever:

* `requests:<window>`: a sorted set of the admitted calls' times; gone 61 s after its last call.
* `tokens:<window>`: a hash of whole seconds to tokens counted in them; gone 61 s after its last count.
* `budget:<counter>`: a hash with the `settled` spend and one `hold:<reservation id>` field per
  call in flight ("amount release-time"); gone at the end of its period.

The scripts touch several keys at once, so every key of a call must live on one server: a
standalone Redis or Valkey (with replicas or Sentinel), not a Cluster. Every request has a short
time limit; any Redis failure raises `QuotaStoreUnavailable`, and the governor applies the
configured fail policy. After a failure, calls skip Redis for `QUIET_SECONDS` (failing at once
instead of each waiting for a time-out), then try it again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from promptdeck.engine.quota_backend import (
    ADMITTED_WITHOUT_LIMITS,
    WINDOW_SECONDS,
    Admission,
    BudgetCounter,
    BudgetRefusal,
    QuotaStoreUnavailable,
    Reservation,
    Spend,
    Window,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

PREFIX = "promptdeck:quota:"
REQUESTS, TOKENS, BUDGET = PREFIX + "requests:", PREFIX + "tokens:", PREFIX + "budget:"
REDIS_TIMEOUT = 0.25  # seconds to connect or for one script; a slower Redis counts as unreachable
MAX_CONNECTIONS = 64  # per replica; a script takes well under a millisecond, so few are busy
POOL_WAIT_SECONDS = 1.0  # how long a call waits for a free connection before it counts as a failure
QUIET_SECONDS = 1.0  # after a failure, calls fail at once for this long before Redis is tried again
WINDOW_TTL_MS = int((WINDOW_SECONDS + 1) * 1000)  # a window's key outlives its last use by this
EPSILON_USD = 1e-9  # float sums: a spend equal to its cap must fit

# Lua helpers every script shares: the time (the server's, unless ARGV[1] names one: the
# contract tests move a clock), and numbers returned as exact strings (Redis turns a Lua number
# into an integer, so fractions must travel as text). Every script's own arguments follow ARGV[1].
_PRELUDE = """
local now = tonumber(ARGV[1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function num(x) return string.format('%.17g', x) end
"""

# KEYS: the request windows, then the token windows. ARGV: the number of request windows, this
# call's unique member, the window in seconds, the windows' TTL in ms, then each window's limit.
# Returns {admitted, limit, remaining, reset, retry_after, index of the refusing window or 0}.
ADMIT = (
    _PRELUDE
    + """
local nreq, member, window, ttl = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5]
local refused, refused_wait, best, best_remaining = 0, -1, 0, nil
local states = {}
for i = 1, #KEYS do
  local key, limit = KEYS[i], tonumber(ARGV[5 + i])
  local remaining, full, wait, reset
  if i <= nreq then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    local n = redis.call('ZCARD', key)
    local over = n - limit
    wait = 0
    if over >= 0 then
      wait = tonumber(redis.call('ZRANGE', key, over, over, 'WITHSCORES')[2]) + window - now
    end
    remaining, full, reset = limit - n - 1, over >= 0, window
  else
    local fields = redis.call('HGETALL', key)
    local buckets, total = {}, 0
    for j = 1, #fields, 2 do
      local second = tonumber(fields[j])
      if second <= now - window then
        redis.call('HDEL', key, fields[j])
      else
        local used = tonumber(fields[j + 1])
        buckets[#buckets + 1] = {second, used}
        total = total + used
      end
    end
    table.sort(buckets, function(a, b) return a[1] < b[1] end)
    wait = 0
    local left = total
    for _, bucket in ipairs(buckets) do
      if left < limit then break end
      left = left - bucket[2]
      wait = bucket[1] + window - now
    end
    reset = 0
    if #buckets > 0 then reset = buckets[#buckets][1] + window - now end
    remaining, full = limit - total, total >= limit
  end
  states[i] = {limit, remaining, math.max(reset, 0), math.max(wait, 0)}
  if full and wait > refused_wait then refused, refused_wait = i, wait end
  if best_remaining == nil or remaining < best_remaining then best, best_remaining = i, remaining end
end
if refused > 0 then
  local s = states[refused]
  return {0, s[1], 0, num(s[3]), num(s[4]), refused}
end
for i = 1, nreq do
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('PEXPIRE', KEYS[i], ttl)
end
local s = states[best]
return {1, s[1], s[2], num(s[3]), '0', 0}
"""
)

# KEYS: token windows. ARGV: tokens, the windows' TTL in ms, the window in seconds.
COUNT_TOKENS = (
    _PRELUDE
    + """
local second = math.floor(now)
for i = 1, #KEYS do
  redis.call('HINCRBY', KEYS[i], second, ARGV[2])
  redis.call('PEXPIRE', KEYS[i], ARGV[3])
  if redis.call('HLEN', KEYS[i]) > 64 then  -- counted often, admitted rarely: trim here too
    for _, field in ipairs(redis.call('HKEYS', KEYS[i])) do
      if tonumber(field) <= now - tonumber(ARGV[4]) then redis.call('HDEL', KEYS[i], field) end
    end
  end
end
return 0
"""
)

# The settled and still-held spend of a budget counter; holds past their release time are
# dropped (the replica that made them died), and so is a counter whose period is over (its key
# expires then too; the `expires` field makes a moved test clock agree).
_BUDGET_READ = """
local function spend_of(key)
  local fields = redis.call('HGETALL', key)
  local settled, reserved = 0, 0
  for j = 1, #fields, 2 do
    if fields[j] == 'expires' and tonumber(fields[j + 1]) <= now then
      redis.call('DEL', key)
      return 0, 0
    end
  end
  for j = 1, #fields, 2 do
    local name, value = fields[j], fields[j + 1]
    if name == 'settled' then
      settled = tonumber(value)
    elseif name ~= 'expires' then
      local amount, release = string.match(value, '^(%S+) (%S+)$')
      if tonumber(release) <= now then
        redis.call('HDEL', key, name)
      else
        reserved = reserved + tonumber(amount)
      end
    end
  end
  return settled, reserved
end
"""

# KEYS: budget counters. ARGV: amount, hold seconds, reservation id, epsilon, then each
# counter's cap and expiry (unix seconds). Returns {0} when held, else {index, settled, reserved}.
# A key holds its expiry as a field too, set with the key's first field.
RESERVE = (
    _PRELUDE
    + _BUDGET_READ
    + """
local amount, hold, id, epsilon = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
for i = 1, #KEYS do
  local settled, reserved = spend_of(KEYS[i])
  if settled + reserved + amount > tonumber(ARGV[4 + 2 * i]) + epsilon then
    return {i, num(settled), num(reserved)}
  end
end
local held = num(amount) .. ' ' .. num(now + hold)
for i = 1, #KEYS do
  local expires = ARGV[5 + 2 * i]
  redis.call('HSET', KEYS[i], 'hold:' .. id, held, 'expires', expires)
  redis.call('PEXPIREAT', KEYS[i], math.ceil(tonumber(expires) * 1000))
end
return {0}
"""
)

# KEYS: budget counters. ARGV: reservation id, actual cost, then each counter's expiry.
SETTLE = (
    _PRELUDE
    + """
for i = 1, #KEYS do
  local expires = tonumber(ARGV[3 + i])
  if expires > now then  -- else its period is over: nothing left to count it in
    redis.call('HDEL', KEYS[i], 'hold:' .. ARGV[2])
    redis.call('HINCRBYFLOAT', KEYS[i], 'settled', ARGV[3])
    redis.call('HSET', KEYS[i], 'expires', ARGV[3 + i])
    redis.call('PEXPIREAT', KEYS[i], math.ceil(expires * 1000))
  end
end
return 0
"""
)

# KEYS: one budget counter. ARGV: spend so far, expiry. Returns 1 if set, 0 if it existed.
SEED = (
    _PRELUDE
    + _BUDGET_READ
    + """
spend_of(KEYS[1])  -- drops it if its period is over
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'settled', ARGV[2], 'expires', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], math.ceil(tonumber(ARGV[3]) * 1000))
return 1
"""
)

# KEYS: budget counters. Returns {settled, reserved, settled, reserved, ...}.
SPEND = (
    _PRELUDE
    + _BUDGET_READ
    + """
local found = {}
for i = 1, #KEYS do
  local settled, reserved = spend_of(KEYS[i])
  found[#found + 1] = num(settled)
  found[#found + 1] = num(reserved)
end
return found
"""
)


class RedisQuotas:
    """The `QuotaBackend` every replica shares."""

    def __init__(
        self, url: str, *, timeout: float = REDIS_TIMEOUT, clock: Callable[[], float] | None = None
    ) -> None:
        import redis.asyncio as aioredis  # here: redis-py costs ~14 MB, and most servers use none
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError

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
        self._failures = (RedisError, OSError)
        self._quiet_until = 0.0
        self._admit = self._redis.register_script(ADMIT)
        self._count_tokens = self._redis.register_script(COUNT_TOKENS)
        self._reserve = self._redis.register_script(RESERVE)
        self._settle = self._redis.register_script(SETTLE)
        self._seed = self._redis.register_script(SEED)
        self._spend = self._redis.register_script(SPEND)

    async def admit(self, requests: Sequence[Window], tokens: Sequence[Window]) -> Admission:
        if not requests and not tokens:
            return ADMITTED_WITHOUT_LIMITS
        windows = [*requests, *tokens]
        keys = [REQUESTS + w.key for w in requests] + [TOKENS + w.key for w in tokens]
        args: list[Any] = [len(requests), uuid.uuid4().hex, WINDOW_SECONDS, WINDOW_TTL_MS]
        admitted, limit, remaining, reset, wait, refused = await self._run(
            self._admit, keys, [*args, *(w.limit for w in windows)]
        )
        return Admission(
            bool(admitted),
            int(limit),
            int(remaining),
            float(reset),
            float(wait),
            windows[int(refused) - 1].key if refused else None,
        )

    async def count_tokens(self, keys: Sequence[str], tokens: int) -> None:
        if tokens > 0 and keys:
            await self._run(
                self._count_tokens, [TOKENS + k for k in keys], [tokens, WINDOW_TTL_MS, WINDOW_SECONDS]
            )

    async def reserve(
        self, counters: Sequence[BudgetCounter], amount_usd: float, *, hold_seconds: float
    ) -> Reservation | BudgetRefusal:
        reservation = Reservation(uuid.uuid4().hex, tuple(counters), max(amount_usd, 0.0))
        if reservation.amount_usd == 0 or not counters:  # never refused, and nothing to hold
            return reservation
        args: list[Any] = [repr(reservation.amount_usd), hold_seconds, reservation.id, EPSILON_USD]
        for counter in counters:
            args += [repr(counter.cap_usd), repr(counter.expires_at)]
        found = await self._run(self._reserve, [BUDGET + c.key for c in counters], args)
        if found[0] == 0:
            return reservation
        return BudgetRefusal(counters[int(found[0]) - 1], float(found[1]), float(found[2]))

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        if not reservation.counters:
            return
        args = [reservation.id, repr(max(actual_usd, 0.0))]
        args += [repr(c.expires_at) for c in reservation.counters]
        await self._run(self._settle, [BUDGET + c.key for c in reservation.counters], args)

    async def seed(self, counter: BudgetCounter, spent_usd: float) -> bool:
        args = [repr(max(spent_usd, 0.0)), repr(counter.expires_at)]
        return bool(await self._run(self._seed, [BUDGET + counter.key], args))

    async def spend(self, keys: Sequence[str]) -> Mapping[str, Spend]:
        if not keys:
            return {}
        found = await self._run(self._spend, [BUDGET + k for k in keys], [])
        return {key: Spend(float(found[2 * i]), float(found[2 * i + 1])) for i, key in enumerate(keys)}

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def _run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """One EVALSHA (redis-py loads the script again if Redis lost it, e.g. after a restart)."""
        if time.monotonic() < self._quiet_until:
            raise QuotaStoreUnavailable("Redis failed a moment ago; it is tried again shortly")
        now = "" if self._clock is None else repr(self._clock())
        try:
            return await script(keys=keys, args=[now, *args])
        except self._failures as exc:
            self._quiet_until = time.monotonic() + QUIET_SECONDS
            raise QuotaStoreUnavailable(f"Redis at {_where(self.url)} did not answer: {exc}") from exc


def _where(url: str) -> str:
    """The URL without a password, for messages."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"
