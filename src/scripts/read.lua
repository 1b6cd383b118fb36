-- read.lua: everything a client shows about each of one or more items, as
-- one snapshot per item.
--
-- KEYS     35 per item, in the order the items are asked (a repeat is read
--          twice); item i's keys start at KEYS[35*(i-1)+1]:
--   +1     stats    the item's hash of exact counts (`likes`, `views`)
--   +2     counters the item's hash of custom counters
--   +3     viewers  the HyperLogLog of today's (UTC) viewers
--   +4     likers   the item's Set of identities
--   +5     bits     the item's Bitmap of integer user ids
--   +6     viewers_all_time  the item's HyperLogLog of every viewer
--   +7..35 the HyperLogLogs of the 29 UTC days before today, newest first
-- ARGV[1]  now      unix seconds (the caller's clock; chose each item's viewers)
-- ARGV[2]  who      the identity asking (the same for every item), or '' for none
-- ARGV[3]  offset   the identity's bit when it is a canonical integer id below 2^32, else ''
--
-- Returns one snapshot per item, in KEYS order: {likes, views,
-- unique_viewers_today, {name, value, ...}, liked, unique_last_7_days,
-- unique_last_30_days, unique_all_time}. A window is one PFCOUNT over its
-- days' HyperLogLogs (Redis merges them, ~0.81% error); liked is -1 without
-- an identity, else 0/1 (a like in either store counts: LIKES_STORE may have
-- been switched); counter values are the strings Redis keeps, whatever they
-- are (the engine reads them); a count that is not a number reads as 0.
-- #KEYS that is not a positive multiple of 35 is an error reply, not a guess.
--
-- A script so that one round trip reads a consistent snapshot of every item
-- asked: the counts and the caller's membership cannot disagree with each
-- other, and a batch costs one Redis command, not one per item.
local PER_ITEM = 35
local who, offset = ARGV[2], ARGV[3]
local items = #KEYS / PER_ITEM
if items < 1 or #KEYS % PER_ITEM ~= 0 then
  return redis.error_reply('ERR read.lua takes 35 KEYS per item, got ' .. #KEYS)
end

local snapshots = {}
for i = 1, items do
  local base = (i - 1) * PER_ITEM
  local stats, counters, viewers = KEYS[base + 1], KEYS[base + 2], KEYS[base + 3]
  local likers, bits, all_time = KEYS[base + 4], KEYS[base + 5], KEYS[base + 6]
  local counts = redis.call('HMGET', stats, 'likes', 'views')
  local liked = -1
  if who ~= '' then
    liked = redis.call('SISMEMBER', likers, who)
    if liked == 0 and offset ~= '' then
      liked = redis.call('GETBIT', bits, offset)
    end
  end
  -- unpack puts at most 29 keys on Lua's stack at a time, whatever the batch.
  snapshots[i] = {
    tonumber(counts[1] or '0') or 0,
    tonumber(counts[2] or '0') or 0,
    redis.call('PFCOUNT', viewers),
    redis.call('HGETALL', counters),
    liked,
    redis.call('PFCOUNT', viewers, unpack(KEYS, base + 7, base + 12)),
    redis.call('PFCOUNT', viewers, unpack(KEYS, base + 7, base + 35)),
    redis.call('PFCOUNT', all_time),
  }
end
return snapshots
