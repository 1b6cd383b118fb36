-- release.lua: end the reconciliation pass's lease, if it is still ours.
--
-- KEYS[1]  lease    the lease key (`SET … NX PX` by the pass that took it)
-- ARGV[1]  holder   the random id the pass took it with
--
-- Returns 1 when the lease was ours and is deleted, 0 when it had expired or
-- another pass holds it now (then it is left alone).
--
-- A script because compare and delete must be one step: a GET then a DEL
-- could delete a lease another pass took in between.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
