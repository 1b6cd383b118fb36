-- audit.lua: one item's live counts and its unapplied outbox events, for the
-- reconciliation pass's drift check. Reads only.
--
-- KEYS[1]  stats    the item's hash of exact counts (`likes`, `views`, `likes_base`)
-- KEYS[2]  likers   the item's Set of identities
-- KEYS[3]  bits     the item's Bitmap of integer user ids
-- KEYS[4]  counters the item's hash of custom counters (only whether it exists)
-- KEYS[5]  outbox   the item's outbox stream (its `outbox::shard`)
-- ARGV[1]  item     the item id (the events' `item`, or a merge's `from`)
-- ARGV[2]  mark     the stream id up to which the system of record has applied the shard
-- ARGV[3]  scan     the most entries of the shard's tail to read
--
-- Returns {exists, likes, views, likes_base, members, pending_likes,
-- pending_views, blocked}: exists is 1 when any of KEYS[1..4] exists; a count
-- that is missing reads 0 and one that is not a number -1 (which no record
-- matches); members is SCARD + BITCOUNT; pending_likes is the item's likes
-- minus unlikes after the mark, pending_views its views after the mark;
-- blocked is 1 when that tail holds an import, merge or merged_in of the item
-- (whose effect the pending counts cannot express) or is `scan` entries long
-- (it may hold more than was read).
--
-- A script so that the counts and the tail are one snapshot: a write between
-- reading them would count as drift.
local stats, likers, bits, counters, outbox = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local item, mark, scan = ARGV[1], ARGV[2], tonumber(ARGV[3])

local function count(text)
  if text == false or text == nil then
    return 0
  end
  return tonumber(text) or -1
end

local exists = redis.call('EXISTS', stats, likers, bits, counters) > 0 and 1 or 0
local counts = redis.call('HMGET', stats, 'likes', 'views', 'likes_base')
local members = redis.call('SCARD', likers) + redis.call('BITCOUNT', bits)

local pending_likes, pending_views, blocked = 0, 0, 0
local tail = redis.call('XRANGE', outbox, '(' .. mark, '+', 'COUNT', scan)
if #tail >= scan then
  blocked = 1
end
for _, entry in ipairs(tail) do
  local fields, flat = {}, entry[2]
  for i = 1, #flat, 2 do
    fields[flat[i]] = flat[i + 1]
  end
  local op = fields.op
  if op == 'import' or op == 'merge' or op == 'merged_in' then
    if fields.item == item or fields.from == item then
      blocked = 1
    end
  elseif fields.item == item then
    if op == 'like' then
      pending_likes = pending_likes + 1
    elseif op == 'unlike' then
      pending_likes = pending_likes - 1
    elseif op == 'view' then
      pending_views = pending_views + 1
    end
  end
end

return {exists, count(counts[1]), count(counts[2]), count(counts[3]), members, pending_likes,
  pending_views, blocked}
