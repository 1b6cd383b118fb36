-- repair.lua: set one item's live state to the system of record's plus the
-- item's unapplied outbox events (the truth, see README "System of record").
--
-- KEYS[1]  stats    the item's hash of exact counts (`likes`, `views`, `likes_base`; `registered` is kept)
-- KEYS[2]  likers   the item's Set of identities: rebuilt
-- KEYS[3]  bits     the item's Bitmap of integer user ids: deleted (its likers move to the Set)
-- KEYS[4]  counters the item's hash of custom counters: rebuilt
-- KEYS[5]  outbox   the item's outbox stream (its `outbox::shard`)
-- ARGV[1]  item     the item id
-- ARGV[2]  mark     the stream id up to which the record has applied the shard
-- ARGV[3]  scan     the most entries of the shard's tail to read
-- ARGV[4]  likes_base  the record's likes without identities
-- ARGV[5]  views    the record's views
-- ARGV[6]  n        how many counters follow
-- ARGV[7 .. 6+2n]   the record's counters: name, value (decimal text), ...
-- ARGV[7+2n ..]     the record's likers, every identity
--
-- Returns {status, likes, views, members, new_likes, new_views, new_members}:
-- status 1 repaired (the counts before, then after), 0 blocked: the tail
-- holds an import, merge or merged_in of the item, or is `scan` entries long;
-- then nothing was written (the rest is 0) and a later pass retries. A count
-- that is not a number reads -1.
--
-- Atomic because the tail is re-read in the same step as the rebuild: a write
-- that lands between the pass's audit and this repair is in the tail and is
-- kept, and none can land during it. likes is set from the rebuilt likers, so
-- likes = likes_base + members holds after it, and a liker of the record who
-- likes again answers changed = false.
local stats, likers, bits, counters, outbox = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local item, mark, scan = ARGV[1], ARGV[2], tonumber(ARGV[3])
local likes_base, views, n = ARGV[4], ARGV[5], tonumber(ARGV[6])

local function count(text)
  if text == false or text == nil then
    return 0
  end
  return tonumber(text) or -1
end

local tail = redis.call('XRANGE', outbox, '(' .. mark, '+', 'COUNT', scan)
if #tail >= scan then
  return {0, 0, 0, 0, 0, 0, 0}
end
local events = {}
for _, entry in ipairs(tail) do
  local fields, flat = {}, entry[2]
  for i = 1, #flat, 2 do
    fields[flat[i]] = flat[i + 1]
  end
  local op = fields.op
  if op == 'import' or op == 'merge' or op == 'merged_in' then
    if fields.item == item or fields.from == item then
      return {0, 0, 0, 0, 0, 0, 0}
    end
  elseif fields.item == item then
    table.insert(events, fields)
  end
end

local before = redis.call('HMGET', stats, 'likes', 'views')
local before_members = redis.call('SCARD', likers) + redis.call('BITCOUNT', bits)

-- Likers: the record's, then the pending likes and unlikes in order.
local set = {}
for i = 7 + 2 * n, #ARGV do
  set[ARGV[i]] = true
end
local pending_views = 0
for _, event in ipairs(events) do
  if event.op == 'like' then
    set[event.who] = true
  elseif event.op == 'unlike' then
    set[event.who] = nil
  elseif event.op == 'view' then
    pending_views = pending_views + 1
  end
end
redis.call('DEL', likers, bits)
local members, chunk = 0, {}
for who in pairs(set) do
  members = members + 1
  table.insert(chunk, who)
  if #chunk == 1000 then
    redis.call('SADD', likers, unpack(chunk))
    chunk = {}
  end
end
if #chunk > 0 then
  redis.call('SADD', likers, unpack(chunk))
end

-- Counts: set from the record, then the pending changes added by Redis itself
-- (exact at any size).
redis.call('HSET', stats, 'likes', likes_base, 'views', views)
redis.call('HINCRBY', stats, 'likes', members)
redis.call('HINCRBY', stats, 'views', pending_views)
if likes_base == '0' then
  redis.call('HDEL', stats, 'likes_base')
else
  redis.call('HSET', stats, 'likes_base', likes_base)
end

-- Counters: the record's, then the pending adds in order, as they were applied.
redis.call('DEL', counters)
for i = 7, 6 + 2 * n, 2 do
  redis.call('HSET', counters, ARGV[i], ARGV[i + 1])
end
for _, event in ipairs(events) do
  if event.op == 'add' then
    local added = event.kind == 'int' and redis.pcall('HINCRBY', counters, event.name, event.by)
    if type(added) ~= 'number' then
      redis.call('HINCRBYFLOAT', counters, event.name, event.by)
    end
  end
end

local after = redis.call('HMGET', stats, 'likes', 'views')
return {1, count(before[1]), count(before[2]), before_members, count(after[1]), count(after[2]),
  members}
