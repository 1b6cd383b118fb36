-- rate_limit_lib.lua: the fixed-window rate limit, prepended to every script
-- that takes a rate-limit key (see src/scripts.rs); not a script on its own.
--
-- rate_limit(key, now, limit, window) checks the writer's counter for the
-- window holding `now` (the key is named by that window's start). It INCRs the
-- counter only when the write is admitted, so a refused write leaves no trace;
-- EXPIRE is set on the first hit only. The TTL is garbage collection, not the
-- window: it runs one extra window so a Redis clock behind the caller's cannot
-- drop a counter while its window is still live.
--
-- Returns admitted (boolean), the count (including this hit when admitted) and
-- the seconds until the window ends.
local function rate_limit(key, now, limit, window)
  local reset = window - (now % window)
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= limit then
    return false, count, reset
  end
  count = redis.call('INCR', key)
  if count == 1 then
    redis.call('EXPIRE', key, reset + window)
  end
  return true, count, reset
end

-- What the current window has used, without counting a hit.
local function rate_peek(key, now, window)
  return tonumber(redis.call('GET', key) or '0'), window - (now % window)
end

