-- wrk script for Sidan's real transition endpoints: each order alternates dispatch ⇄ withdraw
-- (approved → dispatched → approved …), one transition per request, as the staff admin; each order
-- goes to a volunteer of its own, as staff spread a day's orders over their people.
-- args: <file with "token" on line 1, the volunteer ids on line 2, then one order per line: "id [status]">
local token, volunteers, volunteer, orders, state = nil, {}, {}, {}, {}
local counter = 0  -- thread_index is a global set per thread in setup()
local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1]))
  token = f:read("*l")
  for v in string.gmatch(f:read("*l"), "%d+") do table.insert(volunteers, v) end
  for line in f:lines() do
    local id, status = string.match(line, "^(%d+)%s*(%a*)")
    id = tonumber(id)
    if id then
      table.insert(orders, id)
      volunteer[id] = volunteers[(#orders - 1) % #volunteers + 1]
      if status ~= "" then state[id] = status end
    end
  end
  f:close()
  -- Each thread takes its own slice of the orders so no two in-flight requests share one.
  local nthreads = tonumber(args[2]) or 1
  local mine = {}
  for i, id in ipairs(orders) do
    if (i - 1) % nthreads == thread_index then table.insert(mine, id) end
  end
  orders = mine
end

local headers = nil
function request()
  if headers == nil then
    headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
  end
  -- Next order with no request in flight (wrk pipelines many requests per thread).
  local id
  for _ = 1, #orders do
    counter = counter + 1
    id = orders[(counter % #orders) + 1]
    if state[id] ~= "dispatching" and state[id] ~= "withdrawing" then break end
  end
  if state[id] == "dispatched" then
    state[id] = "withdrawing"
    return wrk.format("POST", "/api/v1/orders/" .. id .. "/withdraw", headers, "{}")
  end
  state[id] = "dispatching"
  return wrk.format("POST", "/api/v1/orders/" .. id .. "/dispatch", headers,
    '{"volunteer_id": ' .. volunteer[id] .. ', "accept_within_minutes": 600}')
end

function response(status, headers, body)
  local id = tonumber(string.match(body, '"order_id":(%d+)') or string.match(body, '"id":(%d+)'))
  local st = string.match(body, '"status":"(%a+)"')
  if id and st then state[id] = st end
end
