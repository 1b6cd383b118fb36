-- rate_limit_lib.lua: fixed-window rate limits, put after the shebang of every script
-- that takes rate-limit keys (see src/scripts.rs); not a script on its own.
--
-- rate_limit(now, key, limit, window, key2, limit2, window2) checks the
-- writer's counter `key` for the window holding `now` (the key is named by
-- that window's start) and, when limit2 > 0, a second counter `key2` with its
-- own limit and window: a visitor token's network, or the hourly budget of
-- visitor tokens minted per network. It INCRs the counters only when BOTH
-- admit the write, so a refused write leaves no trace; EXPIRE is set on the
-- first hit only. The TTL is garbage collection, not the window: it runs one
-- extra window so a Redis clock behind the caller's cannot drop a counter
-- while its window is still live.
--
-- Returns admitted (boolean), the count of `key` (including this hit when
-- admitted) and the seconds until the refusing window ends (or `key`'s).
-- Refused by the second limit, the count is `limit`: the caller has nothing
-- left until the second window resets.
local function rate_hit(key, reset, window)
  local count = redis.call('INCR', key)
  if count == 1 then
    redis.call('EXPIRE', key, reset + window)
  end
  return count
end

local function rate_limit(now, key, limit, window, key2, limit2, window2)
  local reset = window - (now % window)
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= limit then
    return false, count, reset
  end
  if limit2 > 0 then
    local reset2 = window2 - (now % window2)
    if tonumber(redis.call('GET', key2) or '0') >= limit2 then
      return false, limit, reset2
    end
    rate_hit(key2, reset2, window2)
  end
  return true, rate_hit(key, reset, window), reset
end

-- What the current window of `key` has used, without counting a hit.
local function rate_peek(key, now, window)
  return tonumber(redis.call('GET', key) or '0'), window - (now % window)
end

