-- wrk script: etcd v3 puts through its JSON gateway (POST /v3/kv/put), a fresh key per request
-- with a value the size of a Switchboard inbound message (~100 bytes), base64 as the gateway wants.
local counter = 0
local prefix

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(data)
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

local value = base64('{"from":"+5491155550000","text":"Hola, necesito mi factura","externalId":"wamid.0000000000000000"}')

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
  prefix = string.format("%x", math.random(1, 2^30))
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function request()
  counter = counter + 1
  local body = '{"key":"' .. base64("messages/" .. prefix .. "-" .. counter) .. '","value":"' .. value .. '"}'
  return wrk.format(nil, "/v3/kv/put", nil, body)
end

function done(summary, latency, requests)
  io.write(string.format("non-2xx responses: %d\n", summary.errors.status))
end
