"""The Lua scripts of the Redis quota backend (engine/quota_redis.py, whose docstring names the
keys): each runs atomically in Redis, so N replicas enforce one limit, not N."""

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

# A token window: a hash of whole seconds to the tokens counted in them, with the buckets'
# running `total` and the `oldest` and `newest` seconds held, so a step reads three fields, not
# sixty buckets. Once the oldest bucket has left the window, the buckets are walked once (the
# expired ones dropped, the three fields recounted): at most once a second per window. A window
# with no bucket left is deleted (nothing to keep, and no key without an expiry).
_TOKEN_WINDOWS = """
local function recount(key, cutoff)
  local fields = redis.call('HGETALL', key)
  local total, oldest, newest = 0, nil, nil
  for j = 1, #fields, 2 do
    local second = tonumber(fields[j])
    if second ~= nil then
      if second <= cutoff then
        redis.call('HDEL', key, fields[j])
      else
        total = total + tonumber(fields[j + 1])
        if oldest == nil or second < oldest then oldest = second end
        if newest == nil or second > newest then newest = second end
      end
    end
  end
  if oldest == nil then
    redis.call('DEL', key)
  else
    redis.call('HSET', key, 'total', string.format('%.0f', total), 'oldest', oldest, 'newest', newest)
  end
  return total, newest
end

-- The tokens counted in the window ending now, and the newest second holding some (or nil).
local function tokens_of(key, cutoff)
  local f = redis.call('HMGET', key, 'total', 'oldest', 'newest')
  if not f[1] then
    if redis.call('EXISTS', key) == 0 then return 0, nil end
    return recount(key, cutoff)
  end
  local oldest = tonumber(f[2])
  if oldest ~= nil and oldest <= cutoff then return recount(key, cutoff) end
  return tonumber(f[1]), tonumber(f[3])
end

-- Seconds until the window's total falls below `limit`, its oldest buckets leaving first
-- (asked only of a full window, after `tokens_of` dropped the expired buckets).
local function tokens_wait(key, total, limit, now, window)
  local fields = redis.call('HGETALL', key)
  local buckets = {}
  for j = 1, #fields, 2 do
    local second = tonumber(fields[j])
    if second ~= nil then buckets[#buckets + 1] = {second, tonumber(fields[j + 1])} end
  end
  table.sort(buckets, function(x, y) return x[1] < y[1] end)
  local wait, left = 0, total
  for _, bucket in ipairs(buckets) do
    if left < limit then break end
    left = left - bucket[2]
    wait = bucket[1] + window - now
  end
  return wait
end

-- Counts `tokens` in the bucket of `second`.
local function count_tokens(key, second, tokens, cutoff, ttl)
  local f = redis.call('HMGET', key, 'total', 'oldest', 'newest')
  local oldest, newest = tonumber(f[2]), tonumber(f[3])
  redis.call('HINCRBY', key, second, tokens)
  if not f[1] or (oldest ~= nil and oldest <= cutoff) then
    recount(key, cutoff)
  else
    redis.call('HINCRBY', key, 'total', tokens)
    if oldest == nil or second < oldest then redis.call('HSET', key, 'oldest', second) end
    if newest == nil or second > newest then redis.call('HSET', key, 'newest', second) end
  end
  redis.call('PEXPIRE', key, ttl)
end
"""

# Many calls' admissions in one script (engine/batched_calls.py), each decided in turn, as if
# each had a script of its own. KEYS: per call, its request windows, its token windows, then its
# budget counters. ARGV: the window in seconds, the windows' TTL in ms and epsilon (after the
# time), then one argument per call, its fields separated by spaces (one argument costs redis-py
# far less to send than a dozen): its number of request windows, token windows and counters,
# its unique member, the amount to hold (0: no budget), the hold in seconds, the reservation id,
# then each window's limit, then each counter's cap. Returns, per call, one of
#   {1, limit, remaining, reset, 0, 0}              admitted (the tightest window's figures)
#   {0, limit, 0, reset, retry_after, window index}  refused by a rate window
#   {3, counter index, settled, reserved}            refused by a budget
#   {2, counter index, ...}                          these counters do not exist: seed them
# and counts a call (in every request window, a hold on every counter) only when admitted.
ADMIT = (
    _PRELUDE
    + _BUDGET_READ
    + _TOKEN_WINDOWS
    + """
local window, ttl, epsilon = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])

-- One call: its keys are KEYS[k + 1 ...], its fields f (the ARGV layout above).
local function admit_call(k, f)
  local nreq, ntok, ncount = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
  local member, amount, hold, id = f[4], tonumber(f[5]), tonumber(f[6]), f[7]
  if id == '-' then id = '' end  -- (a field cannot be empty)
  local limits = 7  -- f[limits + i]: window i's limit, or counter i's cap after the windows
  local nwin = nreq + ntok
  local last = nwin + ncount
  local spends, absent = {}, {}
  for i = nwin + 1, last do
    local settled, reserved = spend_of(KEYS[k + i])
    if settled == nil then absent[#absent + 1] = i - nwin else spends[i] = {settled, reserved} end
  end
  if #absent > 0 then
    table.insert(absent, 1, 2)
    return absent
  end
  local refused, refused_wait, best, best_remaining = 0, -1, 0, nil
  local states = {}
  for i = 1, nwin do
    local key, limit = KEYS[k + i], tonumber(f[limits + i])
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
      local total, newest = tokens_of(key, now - window)
      wait = 0
      if total >= limit then wait = tokens_wait(key, total, limit, now, window) end
      reset = 0
      if newest ~= nil then reset = newest + window - now end
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
  for i = nwin + 1, last do
    local s = spends[i]
    if s[1] + s[2] + amount > tonumber(f[limits + i]) + epsilon then
      return {3, i - nwin, num(s[1]), num(s[2])}
    end
  end
  for i = 1, nreq do
    redis.call('ZADD', KEYS[k + i], now, member)
    redis.call('PEXPIRE', KEYS[k + i], ttl)
  end
  if last > nwin then
    local held, release = num(amount) .. ' ' .. num(now + hold), num(now + hold)
    for i = nwin + 1, last do
      redis.call('HSET', KEYS[k + i], 'hold:' .. id, held)
      redis.call('HINCRBYFLOAT', KEYS[k + i], 'reserved', num(amount))
      redis.call('HSETNX', KEYS[k + i], 'earliest', release)
    end
  end
  if best == 0 then return {1, 0, 0, '0', '0', 0} end
  local s = states[best]
  return {1, s[1], s[2], num(s[3]), '0', 0}
end

local found, k = {}, 0
for a = 5, #ARGV do
  local f = {}
  for field in string.gmatch(ARGV[a], '%S+') do f[#f + 1] = field end
  found[#found + 1] = admit_call(k, f)
  k = k + tonumber(f[1]) + tonumber(f[2]) + tonumber(f[3])
end
return found
"""
)

# Many calls' settlements at once. KEYS: each settlement's token windows, then its budget
# counters. ARGV: the window in seconds, the windows' TTL in ms, then per settlement: its
# number of token windows, its tokens, its number of counters, its reservation id, its actual
# cost, then each counter's expiry. A counter that no longer exists is left alone: it is seeded
# again from the run log on its next use.
SETTLE = (
    _PRELUDE
    + _TOKEN_WINDOWS
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
    if tonumber(tokens) > 0 then count_tokens(key, second, tokens, now - window, ttl) end
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
