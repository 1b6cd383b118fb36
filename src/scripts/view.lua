-- view.lua: record one view of an item, deduplicated per viewer, optionally
-- idempotent, under the writer's rate limits; a counted view also counts in
-- the trending sets, so a view is exactly one Redis command.
--
-- KEYS[1]  rate      the writer's rate-limit counter for the minute holding `now`
-- KEYS[2]  network   the writer's network's counter (visitor tokens), else KEYS[1] (unused)
-- KEYS[3]  stats     the item's hash of exact counts (`views`; `registered` when registered)
-- KEYS[4]  seen      this viewer's dedupe marker: the time of their last counted view
-- KEYS[5]  minute    the view counter of the minute bucket holding `now`
-- KEYS[6]  hour      ... of the hour bucket
-- KEYS[7]  day       ... of the day bucket
-- KEYS[8]  viewers   the HyperLogLog of today's (UTC) viewers (kept 31 days)
-- KEYS[9]  trending_hour  the sorted set of views per item for the hour holding `now`
-- KEYS[10] trending_day   ... for the UTC day holding `now`
-- KEYS[11] viewers_all_time  the item's HyperLogLog of every viewer (never expires)
-- KEYS[12] outbox    the item's outbox stream (its `outbox::shard`); written only when ARGV[17] is '1'
-- KEYS[13] idem      optional: the record of the first answer to this Idempotency-Key
--                     (not per item: the key on another item is a conflict)
-- ARGV[1]  now       unix seconds (the caller's clock)
-- ARGV[2]  limit     writes allowed per window to KEYS[1]
-- ARGV[3]  window    rate-limit window width in seconds
-- ARGV[4]  network_limit  writes allowed per window to KEYS[2]; '0': no network limit
-- ARGV[5]  network_window its window width in seconds
-- ARGV[6]  registered     '1': the item must be registered (ITEMS=registered)
-- ARGV[7]  viewer    the viewer (a user id, or the edge's keyed hash of network and UA)
-- ARGV[8]  dedupe    VIEW_DEDUPE_SECONDS
-- ARGV[9]  countable '1', or '0' for a bot: answer the count, count nothing
-- ARGV[10] minute_expire_at  unix time the minute bucket expires (start + 48 h)
-- ARGV[11] hour_expire_at    ... the hour bucket (start + 35 d)
-- ARGV[12] day_expire_at     ... the day bucket (start + 400 d)
-- ARGV[13] viewers_expire_at ... today's viewers (day start + 31 d)
-- ARGV[14] item              the item id (the trending sets' member)
-- ARGV[15] trending_hour_expire_at  unix time the hour's trending set expires (start + 2 h)
-- ARGV[16] trending_day_expire_at   ... the day's (start + 2 d)
-- ARGV[17] outbox            '1': append a counted view to KEYS[12]; '0': append nothing
-- ARGV[18] fingerprint       of the request, when KEYS[13] is given
-- ARGV[19] idem_ttl          seconds an idempotency record lives (24 h)
-- ARGV[20] idem_key          the raw Idempotency-Key (the event's `idem`), when KEYS[13] is given
--
-- Returns {status, rate_count, reset_seconds, views, counted}: status 1
-- recorded, 2 replayed (the first answer; nothing counted), 3 conflict (key
-- reused with another fingerprint; nothing written), 0 over a limit (nothing
-- written), 4 unknown item (not registered; nothing written). A replay, a
-- conflict or an unknown item reads the rate limit but uses no slot of it.
-- A counted view appends one outbox event `op view item t [idem]`
-- (src/outbox.rs), after the writes it records.
--
-- Atomic because the dedupe decision, the counters, the buckets, the trending
-- sets, the idempotency record and the rate limits must agree: a retried or
-- concurrent request must either see the marker or the record and count
-- nothing, or count everything exactly once; the outbox event is part of
-- "everything", so the system of record sees each counted view once.
local rate, stats, seen, viewers, idem = KEYS[1], KEYS[3], KEYS[4], KEYS[8], KEYS[13]
local now, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local viewer, dedupe, countable = ARGV[7], tonumber(ARGV[8]), ARGV[9] == '1'
local fingerprint, idem_ttl, idem_key = ARGV[18], ARGV[19], ARGV[20]

if ARGV[6] == '1' and redis.call('HEXISTS', stats, 'registered') == 0 then
  local count, reset = rate_peek(rate, now, window)
  return {4, count, reset, 0, 0}
end

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

local admitted, count, reset = rate_limit(now, rate, limit, window, KEYS[2], tonumber(ARGV[4]),
  tonumber(ARGV[5]))
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
  redis.call('PFADD', KEYS[11], viewer)
  if redis.call('TTL', viewers) < 0 then
    redis.call('EXPIREAT', viewers, ARGV[13])
  end
  if counted == 1 then
    views = redis.call('HINCRBY', stats, 'views', 1)
    -- The expiry of a bucket or trending set is set by the hit that creates
    -- it, from its window's start, so later hits never push it back.
    for i = 5, 7 do
      if redis.call('INCR', KEYS[i]) == 1 then
        redis.call('EXPIREAT', KEYS[i], ARGV[i + 5])
      end
    end
    for i = 9, 10 do
      redis.call('ZINCRBY', KEYS[i], 1, ARGV[14])
      if redis.call('TTL', KEYS[i]) < 0 then
        redis.call('EXPIREAT', KEYS[i], ARGV[i + 6])
      end
    end
    if ARGV[17] == '1' then
      if idem then
        redis.call('XADD', KEYS[12], '*', 'op', 'view', 'item', ARGV[14], 't', ARGV[1],
          'idem', idem_key)
      else
        redis.call('XADD', KEYS[12], '*', 'op', 'view', 'item', ARGV[14], 't', ARGV[1])
      end
    end
  end
end
if views == nil then
  views = tonumber(redis.call('HGET', stats, 'views') or '0') or 0
end

if idem then
  redis.call('SET', idem, fingerprint .. '\n' .. views .. '\n' .. counted, 'EX', idem_ttl)
end
return {1, count, reset, views, counted}
