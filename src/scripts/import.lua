-- import.lua: set the starting counts of many items at once (POST /v1/admin/import).
--
-- KEYS, five per item, item i (1-based) at 5*(i-1)+1 .. 5*i:
--   stats     the item's hash of exact counts (`views`, `likes`, `likes_base`; `registered`)
--   counters  the item's hash of custom counters
--   likers    the item's Set of identities
--   bits      the item's Bitmap of integer user ids
--   outbox    the item's outbox stream (its shard), appended to when ARGV[3] is '1'
-- ARGV[1]  now         unix seconds (the caller's clock): the events' `t`
-- ARGV[2]  registered  '1': every item must be registered (ITEMS=registered)
-- ARGV[3]  outbox      '1': append one `import` event per item (the record is on)
-- ARGV[4]  n           how many items follow
-- then, per item, in order:
--   item        the item id (the event's `item`)
--   views       the views to set, decimal, or '' to leave them
--   likes_base  the likes counted before Tally, decimal, or '' to leave it
--   counters    the counters as a JSON object (the event's `counters`), or '' for none
--   k           how many counters follow
--   k pairs of  name, value (decimal text, as HSET stores it)
--
-- Returns {1, n}: every item set; or {4, i}: item i is not registered, and
-- nothing was written.
--
-- Set semantics: each given value replaces the current one, and likes become
-- likes_base plus the identities that like the item (Set and Bitmap), so
-- running the same import twice leaves the same counts. Atomic because an
-- import is all or nothing: every item is checked before the first write, and
-- each item's counts and its outbox event are written together.
local now, registered, outbox = ARGV[1], ARGV[2] == '1', ARGV[3] == '1'
local n = tonumber(ARGV[4])

local lines = {}
local at = 5
for i = 1, n do
  local k = tonumber(ARGV[at + 4])
  lines[i] = {
    item = ARGV[at], views = ARGV[at + 1], likes_base = ARGV[at + 2],
    counters = ARGV[at + 3], k = k, first = at + 5,
  }
  at = at + 5 + 2 * k
end

if registered then
  for i = 1, n do
    if redis.call('HEXISTS', KEYS[5 * i - 4], 'registered') == 0 then
      return {4, i}
    end
  end
end

for i = 1, n do
  local line = lines[i]
  local stats, counters, likers, bits, stream =
    KEYS[5 * i - 4], KEYS[5 * i - 3], KEYS[5 * i - 2], KEYS[5 * i - 1], KEYS[5 * i]
  local event = {'op', 'import', 'item', line.item, 't', now}
  if line.views ~= '' then
    redis.call('HSET', stats, 'views', line.views)
    table.insert(event, 'views')
    table.insert(event, line.views)
  end
  if line.likes_base ~= '' then
    local members = redis.call('SCARD', likers) + redis.call('BITCOUNT', bits)
    redis.call('HSET', stats, 'likes_base', line.likes_base, 'likes', line.likes_base)
    redis.call('HINCRBY', stats, 'likes', members)
    table.insert(event, 'likes_base')
    table.insert(event, line.likes_base)
  end
  for j = 0, line.k - 1 do
    redis.call('HSET', counters, ARGV[line.first + 2 * j], ARGV[line.first + 2 * j + 1])
  end
  if line.counters ~= '' then
    table.insert(event, 'counters')
    table.insert(event, line.counters)
  end
  if outbox then
    redis.call('XADD', stream, '*', unpack(event))
  end
end
return {1, n}
