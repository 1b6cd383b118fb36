-- rate_limit.lua: one hit on a client network's rate limits, alone (the write
-- they guard happens elsewhere: minting a visitor token).
--
-- KEYS[1]  rate     the network's counter for the minute holding `now`
-- KEYS[2]  budget   the network's count of tokens minted in the hour holding `now`
-- ARGV[1]  now      unix seconds (the caller's clock)
-- ARGV[2]  limit    hits allowed per minute
-- ARGV[3]  window   the minute window in seconds (60)
-- ARGV[4]  budget   hits allowed per hour (0: no hourly budget)
-- ARGV[5]  hour     the budget's window in seconds (3600)
--
-- Returns {admitted (0/1), count, limit, reset_seconds}; refused by the hourly
-- budget, count is the limit and reset the seconds to the next hour.
--
-- Atomic because the checks and the INCRs must be one step: read-then-increment
-- from two requests would let concurrent hits past either limit.
local limit = tonumber(ARGV[2])
local admitted, count, reset = rate_limit(
  tonumber(ARGV[1]), KEYS[1], limit, tonumber(ARGV[3]), KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]))
return {admitted and 1 or 0, count, limit, reset}
