-- Adds one isolate's batch of metric counts to the shared hash, at most once,
-- and optionally returns the whole hash (how GET /metrics reads in one round trip).
--
-- KEYS[1]  hash of every count: field "<family>|<labels>" -> integer
-- KEYS[2]  the sending isolate's last applied batch number
-- ARGV[1]  this batch's number (0: nothing to add)
-- ARGV[2]  how long to remember the isolate's number, in seconds
-- ARGV[3]  "1" to return the hash (HGETALL), "0" to return the applied flag
-- ARGV[4..] field, count pairs
--
-- Atomic so that a batch is either added whole and remembered, or not at all:
-- an isolate that lost the answer sends the same batch again and it counts once.
local hash     = KEYS[1]
local last_key = KEYS[2]
local seq      = tonumber(ARGV[1])
local ttl      = tonumber(ARGV[2])
local read     = ARGV[3] == "1"

local applied = 0
if seq > 0 and seq > tonumber(redis.call("GET", last_key) or "0") then
  for i = 4, #ARGV, 2 do
    redis.call("HINCRBY", hash, ARGV[i], ARGV[i + 1])
  end
  redis.call("SET", last_key, seq, "EX", ttl)
  applied = 1
end

if read then
  return redis.call("HGETALL", hash)
end
return applied
