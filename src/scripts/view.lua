-- view.lua: record one view of an item, deduplicated per viewer, optionally
-- idempotent, under the writer's rate limit.
--
-- KEYS[1]  rate      the writer's rate-limit counter for the window holding `now`
-- KEYS[2]  stats     the item's hash of exact counts (field `views`)
-- KEYS[3]  seen      this viewer's dedupe marker: the time of their last counted view
-- KEYS[4]  minute    the view counter of the minute bucket holding `now`
-- KEYS[5]  hour      ... of the hour bucket
-- KEYS[6]  day       ... of the day bucket
-- KEYS[7]  viewers   the HyperLogLog of today's (UTC) viewers
-- KEYS[8]  idem      optional: the record of the first answer to this Idempotency-Key
--                     (not per item: the key on another item is a conflict)
-- ARGV[1]  now       unix seconds (the caller's clock)
-- ARGV[2]  limit     writes allowed per rate-limit window
-- ARGV[3]  window    rate-limit window width in seconds
-- ARGV[4]  viewer    the viewer (a user id, or the edge's keyed hash of IP and UA)
-- ARGV[5]  dedupe    VIEW_DEDUPE_SECONDS
-- ARGV[6]  countable '1', or '0' for a bot: answer the count, count nothing
-- ARGV[7]  minute_expire_at  unix time the minute bucket expires (start + 48 h)
-- ARGV[8]  hour_expire_at    ... the hour bucket (start + 35 d)
-- ARGV[9]  day_expire_at     ... the day bucket (start + 400 d)
-- ARGV[10] viewers_expire_at ... today's viewers (day start + 2 d)
-- ARGV[11] fingerprint       of the request, when KEYS[8] is given
-- ARGV[12] idem_ttl          seconds an idempotency record lives (24 h)
--
-- Returns {status, rate_count, reset_seconds, views, counted}: status 1
-- recorded, 2 replayed (the first answer; nothing counted), 3 conflict (key
-- reused with another fingerprint; nothing written), 0 over the limit
-- (nothing written). A replay or a conflict reads the rate limit but uses no
-- slot of it: it writes nothing.
--
-- Atomic because the dedupe decision, the counters, the buckets, the
-- idempotency record and the rate limit must agree: a retried or concurrent
-- request must either see the marker or the record and count nothing, or count
-- everything exactly once.
local rate, stats, seen, viewers, idem = KEYS[1], KEYS[2], KEYS[3], KEYS[7], KEYS[8]
local now, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local viewer, dedupe, countable = ARGV[4], tonumber(ARGV[5]), ARGV[6] == '1'
local fingerprint, idem_ttl = ARGV[11], ARGV[12]

if idem then
  local record = redis.call('GET', idem)
  if record then
    local count, reset = rate_peek(rate, now, window)
    local first_fingerprint, views, counted = string.match(record, '^(.*)\n(%d+)\n([01])$')
    if first_fingerprint == fingerprint then
      return {2, count, reset, tonumber(views), tonumber(counted)}
    end
    return {3, count, reset, 0, 0}
  end
end

local admitted, count, reset = rate_limit(rate, now, limit, window)
if not admitted then
  return {0, count, reset, 0, 0}
end

local counted = 0
local views
if countable then
  -- The marker holds the time of the last counted view, so the window is
  -- measured on the caller's clock; its TTL only collects it afterwards.
  if redis.call('SET', seen, now, 'NX', 'EX', dedupe) then
    counted = 1
  else
    local last = tonumber(redis.call('GET', seen))
    if last == nil or now - last >= dedupe then
      redis.call('SET', seen, now, 'EX', dedupe)
      counted = 1
    end
  end
  -- Every countable view names a viewer of today, even a deduplicated one
  -- whose counted view was yesterday.
  redis.call('PFADD', viewers, viewer)
  if redis.call('TTL', viewers) < 0 then
    redis.call('EXPIREAT', viewers, ARGV[10])
  end
  if counted == 1 then
    views = redis.call('HINCRBY', stats, 'views', 1)
    for i = 4, 6 do
      -- The expiry is set by the hit that creates the bucket, from the
      -- bucket's start, so later hits never push it back.
      if redis.call('INCR', KEYS[i]) == 1 then
        redis.call('EXPIREAT', KEYS[i], ARGV[i + 3])
      end
    end
  end
end
if views == nil then
  views = tonumber(redis.call('HGET', stats, 'views') or '0')
end

if idem then
  redis.call('SET', idem, fingerprint .. '\n' .. views .. '\n' .. counted, 'EX', idem_ttl)
end
return {1, count, reset, views, counted}
