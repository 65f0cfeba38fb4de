-- wrk script: signed WhatsApp Cloud API webhooks, each a new customer's first message, from a
-- file of pre-signed bodies (wrk's Lua has no HMAC): one "<X-Hub-Signature-256>\t<body>" per
-- line, split among the threads. SWITCHBOARD_WEBHOOK_BODIES names the file and
-- SWITCHBOARD_WEBHOOK_PATH the inbox's webhook, SWITCHBOARD_WEBHOOK_THREADS wrk's -t. A thread that uses up its share starts over:
-- those requests are redeliveries (counted in `wrapped`), cheaper than new messages.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local total = tonumber(os.getenv("SWITCHBOARD_WEBHOOK_THREADS"))
  local id = wrk.thread:get("id")
  lines = {}
  local n = 0
  for line in io.lines(os.getenv("SWITCHBOARD_WEBHOOK_BODIES")) do
    if n % total == id then table.insert(lines, line) end
    n = n + 1
  end
  wrapped = 0
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local path = os.getenv("SWITCHBOARD_WEBHOOK_PATH")

function request()
  counter = counter + 1
  if counter > #lines then
    counter = 1
    wrapped = wrapped + 1
  end
  local line = lines[counter]
  local tab = string.find(line, "\t", 1, true)
  return wrk.format(nil, path, {["X-Hub-Signature-256"] = string.sub(line, 1, tab - 1)}, string.sub(line, tab + 1))
end

function done(summary, latency, requests)
  io.write(string.format("non-2xx responses: %d\n", summary.errors.status))
end
