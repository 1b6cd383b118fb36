-- counter.lua: add to one custom counter of an item, optionally idempotent.
--
-- KEYS[1]  counters the item's hash of custom counters
-- KEYS[2]  stats    the item's hash of exact counts (field `registered`)
-- KEYS[3]  idem     optional: the record of the first answer to this Idempotency-Key
-- ARGV[1]  now      unix seconds (unused: every script takes the time)
-- ARGV[2]  registered '1': the item must be registered (ITEMS=registered)
-- ARGV[3]  name     the counter (hash field)
-- ARGV[4]  kind     'int' (HINCRBY) or 'float' (HINCRBYFLOAT)
-- ARGV[5]  by       the amount, as decimal text
-- ARGV[6]  fingerprint of the request, when KEYS[3] is given
-- ARGV[7]  idem_ttl seconds an idempotency record lives (24 h)
--
-- Returns {status, kind, value}: status 1 added, 2 replayed (the first
-- answer; nothing added), 3 conflict (key reused with another request), 4
-- unknown item (not registered), 5 refused: the result would not be a finite
-- double (or an integer would overflow 64 bits), or the counter holds text that
-- is not a number. On 3-5 nothing was written and kind and value are ''. kind
-- is 'int' or 'float', value the exact text Redis keeps (a Lua number would
-- round a 64-bit integer and truncate a float).
--
-- A script rather than the bare command because the choice needs the current
-- value: an integer added to a counter that already holds a fraction must
-- become HINCRBYFLOAT, and a float add that would leave a value no client can
-- read (inf, or past the largest double) must be refused before it is
-- written; the idempotency record must be written with the add or not at all.
local counters, stats, idem = KEYS[1], KEYS[2], KEYS[3]
local name, kind, by = ARGV[3], ARGV[4], ARGV[5]
local fingerprint, idem_ttl = ARGV[6], ARGV[7]

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

if idem then
  redis.call('SET', idem, fingerprint .. '\n' .. kind .. '\n' .. value, 'EX', idem_ttl)
end
return {1, kind, value}
