-- wrk script for the raw asyncpg baseline: POST <path>/{id} over ids 1..N, round robin per thread.
-- args: N [path, default /transition]
local counter = 0
local n, path
function init(args)
  n = tonumber(args[1]) or 1000
  path = args[2] or "/transition"
end
function request()
  counter = counter + 1
  local id = ((counter * 7919) % n) + 1
  return wrk.format("POST", path .. "/" .. id, {["Content-Type"] = "application/json"}, "{}")
end
