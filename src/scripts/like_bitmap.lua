-- like_bitmap.lua: like or unlike an item for one integer user id (Bitmap
-- store, LIKES_STORE=bitmap), under the writer's rate limit.
--
-- KEYS[1]  rate     the writer's rate-limit counter for the window holding `now`
-- KEYS[2]  stats    the item's hash of exact counts (field `likes`)
-- KEYS[3]  bits     the item's Bitmap, one bit per user id
-- ARGV[1]  now      unix seconds (the caller's clock)
-- ARGV[2]  limit    writes allowed per rate-limit window
-- ARGV[3]  window   rate-limit window width in seconds
-- ARGV[4]  offset   the user id, 0 <= id < BITMAP_MAX_ID (checked by the caller)
-- ARGV[5]  op       '1' like, '0' unlike
--
-- Returns {status, rate_count, reset_seconds, likes, liked, changed}: status 1
-- done, 0 over the limit (then nothing was written and the rest is 0);
-- booleans are 0/1.
--
-- Atomic because the count must move exactly when the bit does: SETBIT returns
-- the previous bit, and HINCRBY follows in the same step only when it flipped,
-- so concurrent, repeated or retried calls never move the count twice.
local stats, bits = KEYS[2], KEYS[3]
local offset, like = ARGV[4], ARGV[5] == '1'

local admitted, count, reset = rate_limit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
if not admitted then
  return {0, count, reset, 0, 0, 0}
end

local previous = redis.call('SETBIT', bits, offset, like and 1 or 0)
local changed = 0
if like and previous == 0 or not like and previous == 1 then
  changed = 1
end

local likes
if changed == 1 then
  likes = redis.call('HINCRBY', stats, 'likes', like and 1 or -1)
else
  likes = tonumber(redis.call('HGET', stats, 'likes') or '0')
end
return {1, count, reset, likes, like and 1 or 0, changed}
