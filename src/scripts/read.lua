-- read.lua: everything a client shows about one item, as one snapshot.
--
-- KEYS[1]  stats    the item's hash of exact counts (`likes`, `views`)
-- KEYS[2]  counters the item's hash of custom counters
-- KEYS[3]  viewers  the HyperLogLog of today's (UTC) viewers
-- KEYS[4]  likers   the item's Set of identities
-- KEYS[5]  bits     the item's Bitmap of integer user ids
-- KEYS[6]  viewers_all_time  the item's HyperLogLog of every viewer
-- KEYS[7..35] the HyperLogLogs of the 29 UTC days before today, newest first
-- ARGV[1]  now      unix seconds (the caller's clock; chose KEYS[3])
-- ARGV[2]  who      the identity asking, or '' for none
-- ARGV[3]  offset   the identity's bit when it is a canonical integer id below 2^32, else ''
--
-- Returns {likes, views, unique_viewers_today, {name, value, ...}, liked,
-- unique_last_7_days, unique_last_30_days, unique_all_time}: a window is one
-- PFCOUNT over its days' HyperLogLogs (Redis merges them, ~0.81% error);
-- liked is -1 without an identity, else 0/1 (a like in either store counts:
-- LIKES_STORE may have been switched); counter values are the strings Redis
-- keeps, whatever they are (the engine reads them); a count that is not a
-- number reads as 0.
--
-- A script so that one round trip reads a consistent snapshot: the counts and
-- the caller's membership cannot disagree with each other.
local stats, counters, viewers, likers, bits = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local who, offset = ARGV[2], ARGV[3]

local counts = redis.call('HMGET', stats, 'likes', 'views')
local liked = -1
if who ~= '' then
  liked = redis.call('SISMEMBER', likers, who)
  if liked == 0 and offset ~= '' then
    liked = redis.call('GETBIT', bits, offset)
  end
end
return {
  tonumber(counts[1] or '0') or 0,
  tonumber(counts[2] or '0') or 0,
  redis.call('PFCOUNT', viewers),
  redis.call('HGETALL', counters),
  liked,
  redis.call('PFCOUNT', viewers, unpack(KEYS, 7, 12)),
  redis.call('PFCOUNT', viewers, unpack(KEYS, 7, 35)),
  redis.call('PFCOUNT', KEYS[6]),
}
