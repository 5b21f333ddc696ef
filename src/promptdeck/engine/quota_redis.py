"""Rate-limit and budget counters in Redis (or Valkey), shared by every replica (docs/governance.md).

Each step is one EVALSHA of a Lua script over all the keys it touches, so it is atomic across
replicas: N replicas enforce one limit, not N. A call costs one script before it (`admit`:
every window and budget of the call); settlements travel many calls at a time in one script
(`settle`, sent by engine/quota_settler.py). The semantics are engine/quota_backend.py's, the
same as engine/quota_memory.py's, on the Redis server's clock (`TIME`), so replicas agree on
windows whatever their own clocks say.

Keys, all under `promptdeck:quota:`, each with an expiry so nothing lives forever:

* `requests:<window>`: a sorted set of the admitted calls' times; gone 61 s after its last call.
* `tokens:<window>`: a hash of whole seconds to tokens counted in them; gone 61 s after its last count.
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

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from redis.asyncio import Redis

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

# A budget counter's settled and held spend, or nil when it does not exist (never seeded, or its
# period is over: the key expires then too, and its `expires` field makes a moved test clock
# agree). Fields: `settled`, `reserved` (the running total of its holds), `earliest` (no hold is
# released before it), `expires`, and one `hold:<reservation id>` per call in flight ("amount
# release-time"). The holds are walked only once `earliest` has passed: those past their release
# time are dropped (the replica that made them died) and the total recounted.
_BUDGET_READ = """
local function spend_of(key)
  local f = redis.call('HMGET', key, 'settled', 'reserved', 'earliest', 'expires')
  if not f[4] then return nil end
  if tonumber(f[4]) <= now then
    redis.call('DEL', key)
    return nil
  end
  local settled, reserved = tonumber(f[1]) or 0, tonumber(f[2]) or 0
  if f[3] and tonumber(f[3]) <= now then
    local fields, earliest = redis.call('HGETALL', key), nil
    reserved = 0
    for j = 1, #fields, 2 do
      if string.sub(fields[j], 1, 5) == 'hold:' then
        local amount, release = string.match(fields[j + 1], '^(%S+) (%S+)$')
        release = tonumber(release)
        if release <= now then
          redis.call('HDEL', key, fields[j])
        else
          reserved = reserved + tonumber(amount)
          if earliest == nil or release < earliest then earliest = release end
        end
      end
    end
    redis.call('HSET', key, 'reserved', num(reserved))
    if earliest == nil then
      redis.call('HDEL', key, 'earliest')
    else
      redis.call('HSET', key, 'earliest', num(earliest))
    end
  end
  return settled, reserved
end
"""

# KEYS: the request windows, the token windows, then the budget counters. ARGV: the number of
# request and token windows, this call's unique member, the window in seconds, the windows' TTL
# in ms, the amount to hold (0: no budget), the hold in seconds, the reservation id, epsilon,
# then each window's limit, then each counter's cap. Returns one of
#   {1, limit, remaining, reset, 0, 0}              admitted (the tightest window's figures)
#   {0, limit, 0, reset, retry_after, window index}  refused by a rate window
#   {3, counter index, settled, reserved}            refused by a budget
#   {2, counter index, ...}                          these counters do not exist: seed them
# and counts the call (in every request window, a hold on every counter) only when admitted.
ADMIT = (
    _PRELUDE
    + _BUDGET_READ
    + """
local nreq, ntok, member = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local window, ttl = tonumber(ARGV[5]), ARGV[6]
local amount, hold, id, epsilon = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10])
local nwin = nreq + ntok
local spends, absent = {}, {}
for i = nwin + 1, #KEYS do
  local settled, reserved = spend_of(KEYS[i])
  if settled == nil then absent[#absent + 1] = i - nwin else spends[i] = {settled, reserved} end
end
if #absent > 0 then
  table.insert(absent, 1, 2)
  return absent
end
local refused, refused_wait, best, best_remaining = 0, -1, 0, nil
local states = {}
for i = 1, nwin do
  local key, limit = KEYS[i], tonumber(ARGV[10 + i])
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
for i = nwin + 1, #KEYS do
  local s = spends[i]
  if s[1] + s[2] + amount > tonumber(ARGV[10 + i]) + epsilon then
    return {3, i - nwin, num(s[1]), num(s[2])}
  end
end
for i = 1, nreq do
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('PEXPIRE', KEYS[i], ttl)
end
if #KEYS > nwin then
  local held, release = num(amount) .. ' ' .. num(now + hold), num(now + hold)
  for i = nwin + 1, #KEYS do
    redis.call('HSET', KEYS[i], 'hold:' .. id, held)
    redis.call('HINCRBYFLOAT', KEYS[i], 'reserved', num(amount))
    redis.call('HSETNX', KEYS[i], 'earliest', release)
  end
end
if best == 0 then return {1, 0, 0, '0', '0', 0} end
local s = states[best]
return {1, s[1], s[2], num(s[3]), '0', 0}
"""
)

# Many calls' settlements at once. KEYS: each settlement's token windows, then its budget
# counters. ARGV: the window in seconds, the windows' TTL in ms, then per settlement: its
# number of token windows, its tokens, its number of counters, its reservation id, its actual
# cost, then each counter's expiry. A counter that no longer exists is left alone: it is seeded
# again from the run log on its next use.
SETTLE = (
    _PRELUDE
    + """
local window, ttl = tonumber(ARGV[2]), ARGV[3]
local second = math.floor(now)
local k, a = 1, 4
while a <= #ARGV do
  local ntok, tokens, ncount = tonumber(ARGV[a]), ARGV[a + 1], tonumber(ARGV[a + 2])
  local id, actual = ARGV[a + 3], ARGV[a + 4]
  a = a + 5
  for _ = 1, ntok do
    local key = KEYS[k]
    k = k + 1
    if tonumber(tokens) > 0 then
      redis.call('HINCRBY', key, second, tokens)
      redis.call('PEXPIRE', key, ttl)
      if redis.call('HLEN', key) > 64 then  -- counted often, admitted rarely: trim here too
        for _, field in ipairs(redis.call('HKEYS', key)) do
          if tonumber(field) <= now - window then redis.call('HDEL', key, field) end
        end
      end
    end
  end
  for _ = 1, ncount do
    local key, expires = KEYS[k], tonumber(ARGV[a])
    k, a = k + 1, a + 1
    -- its period over, or the counter gone: nothing to count it in
    if expires > now and redis.call('HEXISTS', key, 'expires') == 1 then
      local held = redis.call('HGET', key, 'hold:' .. id)
      if held then
        redis.call('HDEL', key, 'hold:' .. id)
        local amount = string.match(held, '^(%S+)')
        local left = tonumber(redis.call('HINCRBYFLOAT', key, 'reserved', '-' .. amount))
        if left < 1e-9 then redis.call('HSET', key, 'reserved', '0') end
      end
      redis.call('HINCRBYFLOAT', key, 'settled', actual)
    end
  end
end
return 0
"""
)

# KEYS: budget counters. ARGV: each one's spend so far and expiry. Returns 1 per counter set,
# 0 per counter that existed (another replica seeded it first).
SEED = (
    _PRELUDE
    + _BUDGET_READ
    + """
local done = {}
for i = 1, #KEYS do
  if spend_of(KEYS[i]) ~= nil then  -- (drops it if its period is over)
    done[i] = 0
  else
    local expires = ARGV[2 * i + 1]
    redis.call('DEL', KEYS[i])
    redis.call('HSET', KEYS[i], 'settled', ARGV[2 * i], 'reserved', '0', 'expires', expires)
    redis.call('PEXPIREAT', KEYS[i], math.ceil(tonumber(expires) * 1000))
    done[i] = 1
  end
end
return done
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
  found[#found + 1] = num(settled or 0)
  found[#found + 1] = num(reserved or 0)
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
        self._failures = (RedisError, OSError)
        self._no_script = NoScriptError
        self._quiet_until = 0.0
        self._sha: dict[str, str] = {}  # script: its SHA1, once Redis has it
        self._members = UniqueIds()

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
        keys = [REQUESTS + w.key for w in requests]
        keys += [TOKENS + w.key for w in tokens]
        keys += [BUDGET + c.key for c in counters]
        args: list[Any] = [
            len(requests),
            len(tokens),
            self._members.next(),
            WINDOW_SECONDS,
            WINDOW_TTL_MS,
            repr(amount_usd) if counters else 0,
            hold_seconds,
            reservation_id,
            EPSILON_USD,
        ]
        args += [w.limit for w in requests]
        args += [w.limit for w in tokens]
        args += [repr(c.cap_usd) for c in counters]
        found = await self._run(ADMIT, keys, args)
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
            await self._run(SETTLE, keys, args)

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

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """One EVALSHA (the script is loaded first, and again if Redis lost it, e.g. after a
        restart). Called straight, not through redis-py's `Script`: it costs less per call."""
        if time.monotonic() < self._quiet_until:
            raise QuotaStoreUnavailable("Redis failed a moment ago; it is tried again shortly")
        now = "" if self._clock is None else repr(self._clock())
        try:
            sha = self._sha.get(script)
            if sha is not None:
                try:
                    return await self._evalsha(sha, keys, now, args)
                except self._no_script:
                    pass
            sha = self._sha[script] = await self._redis.script_load(script)
            return await self._evalsha(sha, keys, now, args)
        except self._failures as exc:
            self._quiet_until = time.monotonic() + QUIET_SECONDS
            raise QuotaStoreUnavailable(f"Redis at {_where(self.url)} did not answer: {exc}") from exc

    async def _evalsha(self, sha: str, keys: list[str], now: str, args: list[Any]) -> Any:
        command = self._redis.execute_command  # untyped in redis-py
        return await command("EVALSHA", sha, len(keys), *keys, now, *args)  # type: ignore[no-untyped-call]


def _where(url: str) -> str:
    """The URL without a password, for messages."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"
