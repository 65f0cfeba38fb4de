-- wrk script: an agent re-reading one of its conversations (GET /v1/conversations/{id}),
-- linearizable (the default), with its session token.
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("AGENT_TOKEN")
wrk.path = "/v1/conversations/" .. os.getenv("CONVERSATION_ID")

function done(summary, latency, requests)
  io.write(string.format("non-2xx responses: %d\n", summary.errors.status))
end
