-- counter.lua: add to one custom counter of an item, optionally idempotent.
--
-- KEYS[1]  counters the item's hash of custom counters
-- KEYS[2]  stats    the item's hash of exact counts (field `registered`)
-- KEYS[3]  outbox   the item's outbox stream (its `outbox::shard`); written only when ARGV[6] is '1'
-- KEYS[4]  idem     optional: the record of the first answer to this Idempotency-Key
-- ARGV[1]  now      unix seconds (the caller's clock; the event's `t`)
-- ARGV[2]  registered '1': the item must be registered (ITEMS=registered)
-- ARGV[3]  name     the counter (hash field)
-- ARGV[4]  kind     'int' (HINCRBY) or 'float' (HINCRBYFLOAT)
-- ARGV[5]  by       the amount, as decimal text
-- ARGV[6]  outbox   '1': append the add to KEYS[3]; '0': append nothing
-- ARGV[7]  item     the item id (the event's `item`)
-- ARGV[8]  fingerprint of the request, when KEYS[4] is given
-- ARGV[9]  idem_ttl seconds an idempotency record lives (24 h)
-- ARGV[10] idem_key the raw Idempotency-Key (the event's `idem`), when KEYS[4] is given
--
-- Returns {status, kind, value}: status 1 added, 2 replayed (the first
-- answer; nothing added), 3 conflict (key reused with another request), 4
-- unknown item (not registered), 5 refused: the result would not be a finite
-- double (or an integer would overflow 64 bits), or the counter holds text that
-- is not a number. On 3-5 nothing was written and kind and value are ''. kind
-- is 'int' or 'float', value the exact text Redis keeps (a Lua number would
-- round a 64-bit integer and truncate a float). An add (status 1) appends one
-- outbox event `op add item t name kind by [idem]` (src/outbox.rs) with the
-- kind it was applied as: `float` once it went through HINCRBYFLOAT.
--
-- A script rather than the bare command because the choice needs the current
-- value: an integer added to a counter that already holds a fraction must
-- become HINCRBYFLOAT, and a float add that would leave a value no client can
-- read (inf, or past the largest double) must be refused before it is
-- written; the idempotency record and the outbox event must be written with the
-- add or not at all.
local counters, stats, idem = KEYS[1], KEYS[2], KEYS[4]
local name, kind, by = ARGV[3], ARGV[4], ARGV[5]
local fingerprint, idem_ttl, idem_key = ARGV[8], ARGV[9], ARGV[10]

if ARGV[2] == '1' and redis.call('HEXISTS', stats, 'registered') == 0 then
  return {4, '', ''}
end

if idem then
  local record = redis.call('GET', idem)
  if record then
    local first_fingerprint, first_kind, value = string.match(record, '^(.*)\n(%a+)\n([^\n]*)$')
    if first_fingerprint == fingerprint then
      return {2, first_kind, value}
    end
    return {3, '', ''}
  end
end

local value
if kind == 'int' then
  local answer = redis.pcall('HINCRBY', counters, name, by)
  if type(answer) == 'number' then
    value = redis.call('HGET', counters, name)
  elseif string.find(answer.err, 'overflow', 1, true) then
    return {5, '', ''}
  elseif not string.find(answer.err, 'not an integer', 1, true) then
    return answer
  end
end
if value == nil then
  -- Checked in double precision before writing: Redis adds in long double and
  -- would keep 1.99e308, which no double (and no JSON reader) can hold.
  local sum = tonumber(redis.call('HGET', counters, name) or '0')
  if sum == nil then
    return {5, '', ''}
  end
  sum = sum + tonumber(by)
  if sum ~= sum or sum == math.huge or sum == -math.huge then
    return {5, '', ''}
  end
  kind = 'float'
  value = redis.call('HINCRBYFLOAT', counters, name, by)
end

if ARGV[6] == '1' then
  local event = {'op', 'add', 'item', ARGV[7], 't', ARGV[1], 'name', name, 'kind', kind, 'by', by}
  if idem then
    table.insert(event, 'idem')
    table.insert(event, idem_key)
  end
  redis.call('XADD', KEYS[3], '*', unpack(event))
end

if idem then
  redis.call('SET', idem, fingerprint .. '\n' .. kind .. '\n' .. value, 'EX', idem_ttl)
end
return {1, kind, value}
