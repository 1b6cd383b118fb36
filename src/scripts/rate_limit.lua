-- rate_limit.lua: one hit on a fixed-window rate limit, alone (the write it
-- guards happens elsewhere, e.g. minting a visitor token).
--
-- KEYS[1]  rate     the subject's counter for the window holding `now`
-- ARGV[1]  now      unix seconds (the caller's clock)
-- ARGV[2]  limit    hits allowed per window
-- ARGV[3]  window   window width in seconds
--
-- Returns {admitted (0/1), count, limit, reset_seconds}.
--
-- Atomic because the check and the INCR must be one step: read-then-increment
-- from two requests would let concurrent hits past the limit.
local limit = tonumber(ARGV[2])
local admitted, count, reset = rate_limit(KEYS[1], tonumber(ARGV[1]), limit, tonumber(ARGV[3]))
return {admitted and 1 or 0, count, limit, reset}
