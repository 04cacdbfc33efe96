-- wrk script for the raw asyncpg baseline: POST /transition/{id} over ids 1..N, round robin per thread.
local counter = 0
local n, offset
function init(args)
  n = tonumber(args[1]) or 1000
  offset = (tonumber(args[2]) or 0)
end
function request()
  counter = counter + 1
  local id = ((counter * 7919 + offset) % n) + 1
  return wrk.format("POST", "/transition/" .. id, {["Content-Type"] = "application/json"}, "{}")
end
