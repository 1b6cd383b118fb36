-- merge.lua: fold an old item id into a new one (POST /v1/admin/items/{item}/merge).
--
-- KEYS[1]  to_stats      the new item's hash of exact counts (`likes`, `views`, `likes_base`; `registered`)
-- KEYS[2]  to_counters   its hash of custom counters
-- KEYS[3]  to_likers     its Set of identities
-- KEYS[4]  to_bits       its Bitmap of integer user ids
-- KEYS[5]  to_all        its all-time HyperLogLog of viewers
-- KEYS[6..10]            the same five keys of the old item (`from`)
-- KEYS[11] from_outbox   the old item's outbox stream: gets the `merge` event
-- KEYS[12] to_outbox     the new item's outbox stream: gets the `merged_in` marker
-- KEYS[13 .. 12+D]       the new item's day buckets of views, today first, one per day back (D = ARGV[7])
-- KEYS[13+D .. 12+2D]    the old item's, in the same order
-- KEYS[13+2D .. 12+2D+V] the new item's daily HyperLogLogs of viewers, today first (V = ARGV[8])
-- KEYS[13+2D+V .. 12+2D+2V] the old item's, in the same order
-- ARGV[1]  now          unix seconds (the caller's clock): the events' `t`
-- ARGV[2]  registered   '1': the new item must be registered (ITEMS=registered)
-- ARGV[3]  outbox       '1': append the two events (the record is on)
-- ARGV[4]  item         the new item id
-- ARGV[5]  from         the old item id
-- ARGV[6]  today        the start of the UTC day holding `now`
-- ARGV[7]  days         D: day buckets kept (400)
-- ARGV[8]  viewer_days  V: daily HyperLogLogs kept (31)
-- ARGV[9]  day_ttl      seconds a day bucket lives after its start
-- ARGV[10] viewers_ttl  seconds a daily HyperLogLog lives after its day starts
--
-- Returns {status, merged, likes, views}: status 1 done (merged 1 when the
-- old item had anything, 0 when it had nothing and nothing was written), 4
-- unknown item (the new item is not registered), 5 refused: a summed custom
-- counter would overflow 64 bits or not be a finite double, or holds text that
-- is not a number. On 4 and 5 nothing was written.
--
-- What moves: likers (a union: an identity that liked both counts once, across
-- Set and Bitmap), likes_base, views, day buckets, the daily and all-time
-- HyperLogLogs (PFMERGE) and custom counters (summed as counter.lua adds:
-- HINCRBY while both are integers, else HINCRBYFLOAT); then the old item's
-- keys are deleted, so it reads as zeros. Minute and hour buckets, dedupe
-- markers and trending sets are not moved. Atomic because the old item's
-- counts must be added and deleted in one step: a second merge, a retry or a
-- concurrent write can never count them twice or lose one.
local to_stats, to_counters, to_likers, to_bits, to_all = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local from_stats, from_counters, from_likers, from_bits, from_all = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local now, item, from = ARGV[1], ARGV[4], ARGV[5]
local today, days, viewer_days = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local day_ttl, viewers_ttl = tonumber(ARGV[9]), tonumber(ARGV[10])
local to_day, from_day = 12, 12 + days
local to_viewers, from_viewers = 12 + 2 * days, 12 + 2 * days + viewer_days

local function counts()
  local c = redis.call('HMGET', to_stats, 'likes', 'views')
  return tonumber(c[1] or '0') or 0, tonumber(c[2] or '0') or 0
end

if ARGV[2] == '1' and redis.call('HEXISTS', to_stats, 'registered') == 0 then
  return {4, 0, 0, 0}
end

local from_keys = {from_stats, from_counters, from_likers, from_bits, from_all}
for i = from_day + 1, from_day + days do
  table.insert(from_keys, KEYS[i])
end
for i = from_viewers + 1, from_viewers + viewer_days do
  table.insert(from_keys, KEYS[i])
end
if redis.call('EXISTS', unpack(from_keys)) == 0 then
  local likes, views = counts()
  return {1, 0, likes, views}
end

-- Counters first, checked before anything is written: every sum must be a
-- finite double. Integer sums go through HINCRBY, whose overflow error writes
-- nothing; one that overflows undoes the integer adds before it (exactly:
-- they are integers) and the merge is refused.
local flat = redis.call('HGETALL', from_counters)
for i = 1, #flat, 2 do
  local by = tonumber(flat[i + 1])
  local current = tonumber(redis.call('HGET', to_counters, flat[i]) or '0')
  if by == nil or current == nil then
    return {5, 0, 0, 0}
  end
  local sum = current + by
  if sum ~= sum or sum == math.huge or sum == -math.huge then
    return {5, 0, 0, 0}
  end
end
local added, floats = {}, {}
for i = 1, #flat, 2 do
  local name, by = flat[i], flat[i + 1]
  local answer = redis.pcall('HINCRBY', to_counters, name, by)
  if type(answer) == 'number' then
    table.insert(added, {name, by})
  elseif string.find(answer.err, 'not an integer', 1, true) then
    table.insert(floats, {name, by})
  else
    for _, undo in ipairs(added) do
      -- The negation as text: a Lua number would round a 64-bit integer.
      local by = undo[2]
      if string.sub(by, 1, 1) == '-' then
        by = string.sub(by, 2)
      elseif by ~= '0' then
        by = '-' .. by
      end
      redis.call('HINCRBY', to_counters, undo[1], by)
    end
    return {5, 0, 0, 0}
  end
end
for _, add in ipairs(floats) do
  redis.call('HINCRBYFLOAT', to_counters, add[1], add[2])
end

-- Likers: the union, each identity once across the Set and the Bitmap.
local function bit_of(member)
  if #member <= 10 and string.find(member, '^%d+$') and (member == '0' or string.sub(member, 1, 1) ~= '0') then
    local n = tonumber(member)
    if n < 4294967296 then
      return n
    end
  end
  return nil
end
for _, member in ipairs(redis.call('SMEMBERS', from_likers)) do
  local bit = bit_of(member)
  if not (bit and redis.call('GETBIT', to_bits, bit) == 1) then
    redis.call('SADD', to_likers, member)
  end
end
if redis.call('EXISTS', from_bits) == 1 then
  -- A bit of the old item whose id the new item's Set holds is that liker
  -- again: cleared before the Bitmaps are joined.
  for _, member in ipairs(redis.call('SMEMBERS', to_likers)) do
    local bit = bit_of(member)
    if bit and redis.call('GETBIT', from_bits, bit) == 1 then
      redis.call('SETBIT', from_bits, bit, 0)
    end
  end
  redis.call('BITOP', 'OR', to_bits, to_bits, from_bits)
end
local from_base = tonumber(redis.call('HGET', from_stats, 'likes_base') or '0') or 0
local base = (tonumber(redis.call('HGET', to_stats, 'likes_base') or '0') or 0) + from_base
if from_base ~= 0 then
  redis.call('HSET', to_stats, 'likes_base', base)
end
redis.call('HSET', to_stats, 'likes', base)
redis.call('HINCRBY', to_stats, 'likes', redis.call('SCARD', to_likers) + redis.call('BITCOUNT', to_bits))

local from_views = tonumber(redis.call('HGET', from_stats, 'views') or '0') or 0
if from_views ~= 0 then
  redis.call('HINCRBY', to_stats, 'views', from_views)
end

-- Day buckets: summed; a bucket the new item did not have expires when the
-- old one would have (its day's start + day_ttl), as view.lua sets it.
local old = redis.call('MGET', unpack(KEYS, from_day + 1, from_day + days))
for k = 1, days do
  local views = tonumber(old[k])
  if views then
    local key = KEYS[to_day + k]
    redis.call('INCRBY', key, views)
    if redis.call('TTL', key) < 0 then
      redis.call('EXPIREAT', key, today - (k - 1) * 86400 + day_ttl)
    end
  end
end

-- Unique viewers: each day's HyperLogLogs and the all-time ones merged.
for k = 1, viewer_days do
  local source = KEYS[from_viewers + k]
  if redis.call('EXISTS', source) == 1 then
    local key = KEYS[to_viewers + k]
    redis.call('PFMERGE', key, source)
    if redis.call('TTL', key) < 0 then
      redis.call('EXPIREAT', key, today - (k - 1) * 86400 + viewers_ttl)
    end
  end
end
if redis.call('EXISTS', from_all) == 1 then
  redis.call('PFMERGE', to_all, from_all)
end

redis.call('DEL', unpack(from_keys))
if ARGV[3] == '1' then
  redis.call('XADD', KEYS[11], '*', 'op', 'merge', 'item', item, 't', now, 'from', from)
  redis.call('XADD', KEYS[12], '*', 'op', 'merged_in', 'item', item, 't', now, 'from', from)
end
local likes, views = counts()
return {1, 1, likes, views}
