-- wrk script: GET /v1/conversations/{id}, linearizable (the default), cycling through the
-- "token conversation-id" lines of $READS_FILE (each thread starts at a different line).
local reads = {}
for line in io.lines(os.getenv("READS_FILE")) do
  local token, id = line:match("^(%S+) (%S+)$")
  if token then
    reads[#reads + 1] = wrk.format("GET", "/v1/conversations/" .. id, { ["Authorization"] = "Bearer " .. token })
  end
end
local next = 1

-- Threads start apart by the golden ratio of the list, so they do not read the same
-- conversation one right after the other.
function setup(thread)
  thread:set("thread_number", (thread_count or 0))
  thread_count = (thread_count or 0) + 1
end

function init(args)
  next = math.floor(((thread_number or 0) * 0.6180339887 % 1) * #reads) + 1
end

function request()
  local r = reads[next]
  next = next % #reads + 1
  return r
end

function done(summary, latency, requests)
  io.write(string.format("non-2xx responses: %d\n", summary.errors.status))
end
