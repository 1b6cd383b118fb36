-- like.lua: like or unlike an item for one identity, under the writer's rate
-- limits, in whichever store (Set or Bitmap) holds the identity's like.
--
-- KEYS[1]  rate     the writer's rate-limit counter for the minute holding `now`
-- KEYS[2]  network  the writer's network's counter (visitor tokens), else KEYS[1] (unused)
-- KEYS[3]  stats    the item's hash of exact counts (`likes`; `registered` when registered)
-- KEYS[4]  likers   the item's Set of identities
-- KEYS[5]  bits     the item's Bitmap, one bit per integer user id
-- KEYS[6]  outbox   the item's outbox stream (its `outbox::shard`); written only when ARGV[11] is '1'
-- ARGV[1]  now      unix seconds (the caller's clock)
-- ARGV[2]  limit    writes allowed per window to KEYS[1]
-- ARGV[3]  window   rate-limit window width in seconds
-- ARGV[4]  network_limit  writes allowed per window to KEYS[2]; '0': no network limit
-- ARGV[5]  network_window its window width in seconds
-- ARGV[6]  registered     '1': the item must be registered (ITEMS=registered)
-- ARGV[7]  who      the identity (the Set member)
-- ARGV[8]  offset   the identity's bit when it is a canonical integer id below 2^32, else ''
-- ARGV[9]  store    'bits': a new like goes to the Bitmap (LIKES_STORE=bitmap and
--                   an id below BITMAP_MAX_ID); 'set': to the Set
-- ARGV[10] op       '1' like, '0' unlike
-- ARGV[11] outbox   '1': append the change to KEYS[6] (the system of record is on); '0': append nothing
-- ARGV[12] item     the item id (the event's `item`)
--
-- Returns {status, rate_count, reset_seconds, likes, liked, changed}: status 1
-- done, 0 over a limit, 4 unknown item (not registered); on 0 and 4 nothing was
-- written and the rest is 0 (4 uses no rate-limit slot). Booleans are 0/1.
-- A like or unlike that changed the state appends one outbox event
-- `op like|unlike item t who` (src/outbox.rs), after the writes it records.
--
-- Atomic because the count must move exactly when membership does: the
-- script reads both stores and HINCRBY follows in the same step only when the
-- state changed, so concurrent, repeated or retried calls never move the count
-- twice; the limits are checked in the same step so a refused write changes
-- nothing; and the outbox event is appended in the same step as the change, so
-- the system of record sees every change exactly once. Both stores are read because switching LIKES_STORE leaves earlier
-- likes in the other one: a like there is a like, and an unlike removes it.
local stats, likers, bits = KEYS[3], KEYS[4], KEYS[5]
local who, offset, store, like = ARGV[7], ARGV[8], ARGV[9], ARGV[10] == '1'

if ARGV[6] == '1' and redis.call('HEXISTS', stats, 'registered') == 0 then
  return {4, 0, 0, 0, 0, 0}
end

local admitted, count, reset = rate_limit(tonumber(ARGV[1]), KEYS[1], tonumber(ARGV[2]),
  tonumber(ARGV[3]), KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]))
if not admitted then
  return {0, count, reset, 0, 0, 0}
end

local in_set = redis.call('SISMEMBER', likers, who) == 1
local in_bits = offset ~= '' and redis.call('GETBIT', bits, offset) == 1
local changed = 0
if like and not (in_set or in_bits) then
  if store == 'bits' then
    redis.call('SETBIT', bits, offset, 1)
  else
    redis.call('SADD', likers, who)
  end
  changed = 1
elseif not like and (in_set or in_bits) then
  if in_set then
    redis.call('SREM', likers, who)
  end
  -- Only a set bit is cleared: an unlike never allocates a bitmap.
  if in_bits then
    redis.call('SETBIT', bits, offset, 0)
  end
  changed = 1
end

local likes
if changed == 1 then
  likes = redis.call('HINCRBY', stats, 'likes', like and 1 or -1)
  if ARGV[11] == '1' then
    redis.call('XADD', KEYS[6], '*', 'op', like and 'like' or 'unlike', 'item', ARGV[12],
      't', ARGV[1], 'who', who)
  end
else
  likes = tonumber(redis.call('HGET', stats, 'likes') or '0') or 0
end
return {1, count, reset, likes, like and 1 or 0, changed}
