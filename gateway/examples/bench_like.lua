-- bench_like.lua: the shape and size of Tally's like script, for the gateway
-- benchmark (scripts/bench-gateway.sh); not used by the worker.
--
-- KEYS[1]  rate     a rate-limit counter
-- KEYS[2]  stats    a hash of counts (field `likes`)
-- KEYS[3]  likers   a Set of identities
-- ARGV[1]  now      unix seconds
-- ARGV[2]  limit    writes allowed per window
-- ARGV[3]  window   window width in seconds
-- ARGV[4]  who      the identity
-- ARGV[5]  op       '1' like, '0' unlike
--
-- Returns {status, rate_count, reset_seconds, likes, liked, changed}.
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
local reset = tonumber(ARGV[3]) - (tonumber(ARGV[1]) % tonumber(ARGV[3]))
if count > tonumber(ARGV[2]) then
  return {0, count, reset, 0, 0, 0}
end

local like = ARGV[5] == '1'
local changed
if like then
  changed = redis.call('SADD', KEYS[3], ARGV[4])
else
  changed = redis.call('SREM', KEYS[3], ARGV[4])
end

local likes
if changed == 1 then
  likes = redis.call('HINCRBY', KEYS[2], 'likes', like and 1 or -1)
else
  likes = tonumber(redis.call('HGET', KEYS[2], 'likes') or '0')
end
return {1, count, reset, likes, like and 1 or 0, changed}
