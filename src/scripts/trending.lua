-- trending.lua: count one view of an item in the current hour's and day's
-- trending sets (derived data, updated after the response).
--
-- KEYS[1]  hour     the sorted set of views per item for the hour holding `now`
-- KEYS[2]  day      ... for the UTC day holding `now`
-- ARGV[1]  now      unix seconds (the caller's clock; chose the keys)
-- ARGV[2]  item     the item id (the member)
-- ARGV[3]  hour_expire_at  unix time the hour set expires (start + 2 h)
-- ARGV[4]  day_expire_at   unix time the day set expires (start + 2 d)
--
-- Returns 1.
--
-- A script so that both windows move together in one round trip, and each set
-- gets its expiry when it is created, never pushed back later.
for i = 1, 2 do
  redis.call('ZINCRBY', KEYS[i], 1, ARGV[2])
  if redis.call('TTL', KEYS[i]) < 0 then
    redis.call('EXPIREAT', KEYS[i], ARGV[i + 2])
  end
end
return 1
