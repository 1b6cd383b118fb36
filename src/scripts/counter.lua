-- counter.lua: add to one custom counter of an item.
--
-- KEYS[1]  counters the item's hash of custom counters
-- ARGV[1]  now      unix seconds (unused: every script takes the time)
-- ARGV[2]  name     the counter (hash field)
-- ARGV[3]  kind     'int' (HINCRBY) or 'float' (HINCRBYFLOAT)
-- ARGV[4]  by       the amount, as decimal text
--
-- Returns {kind, value}: 'int' and an integer, or 'float' and the value as the
-- string Redis keeps (a Lua number would truncate it to an integer).
--
-- A script rather than the bare command because the choice needs the current
-- value: an integer added to a counter that already holds a fraction must
-- become HINCRBYFLOAT, decided and applied in one atomic step.
local counters, name, kind, by = KEYS[1], ARGV[2], ARGV[3], ARGV[4]

if kind == 'int' then
  local value = redis.pcall('HINCRBY', counters, name, by)
  if type(value) == 'number' then
    return {'int', value}
  end
  if not string.find(value.err, 'not an integer', 1, true) then
    return value
  end
end
return {'float', redis.call('HINCRBYFLOAT', counters, name, by)}
