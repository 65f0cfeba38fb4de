-- wrk script: every request is a new customer's first WhatsApp message (unique externalId and
-- sender), the heaviest write path: new contact, new conversation, keyword rules, routing.
local counter = 0
local prefix

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
  prefix = string.format("%x", math.random(1, 2^30))
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SWITCHBOARD_ADMIN_TOKEN")

function request()
  counter = counter + 1
  local id = prefix .. "-" .. counter
  local body = '{"from":"+' .. id .. '","text":"Hola, necesito mi factura","externalId":"wamid.' .. id .. '"}'
  return wrk.format(nil, "/v1/channels/whatsapp/messages", nil, body)
end

local failures = 0
function response(status, headers, body)
  if status ~= 202 then failures = failures + 1 end
end

function done(summary, latency, requests)
  io.write(string.format("non-202 responses: %d\n", summary.errors.status))
end
