# Sourced by the bench scripts: the three-node cluster file and the agents every scenario uses.
json() { python3 -c "import sys,json; print(json.load(sys.stdin)$1)"; }

# setup_agents BASE_URL: a WhatsApp queue and 20 available agents with capacity 5 (the first 100
# conversations are assigned, the rest wait); their session tokens end up in `tokens`.
# Needs $admin ("Authorization: Bearer <admin token>").
setup_agents() {
  local base="$1" i token
  curl -sf -X POST "$base/v1/queues" -H "$admin" -d '{"name":"support","channels":["whatsapp"]}' >/dev/null
  tokens=()
  for i in $(seq 20); do
    curl -sf -X POST "$base/v1/agents" -H "$admin" \
      -d "{\"name\":\"Agent $i\",\"email\":\"agent$i@example.com\",\"password\":\"bench-password\",\"capacity\":5}" >/dev/null
    token=$(curl -sf -X POST "$base/v1/sessions" -d "{\"email\":\"agent$i@example.com\",\"password\":\"bench-password\"}" | json '["token"]')
    curl -sf -X PUT "$base/v1/agents/me/status" -H "Authorization: Bearer $token" -d '{"status":"available"}' >/dev/null
    tokens+=("$token")
  done
}

# write_agent_reads BASE_URL FILE: "token conversation-id" for each agent's assigned conversations
# (what loadtest/read.lua cycles through).
write_agent_reads() {
  local base="$1" file="$2" token
  for token in "${tokens[@]}"; do
    curl -sf "$base/v1/conversations?assignee=me&limit=5" -H "Authorization: Bearer $token" \
      | python3 -c "import sys,json; [print('$token', c['id']) for c in json.load(sys.stdin)['items']]"
  done > "$file"
}

# write_cluster_file ROOT TOKEN: ROOT/cluster.toml, three nodes on loopback (API 18181-18183, peer
# 17181-17183) keeping their data under ROOT/data, with TOKEN as the admin token.
write_cluster_file() {
  local root="$1" token="$2"
  cat > "$root/cluster.toml" <<TOML
[cluster]
secret = "bench-secret-$$"
admin_token = "$token"
data = "$root/data"
[[node]]
id = "n1"
api = "127.0.0.1:18181"
peer = "127.0.0.1:17181"
[[node]]
id = "n2"
api = "127.0.0.1:18182"
peer = "127.0.0.1:17182"
[[node]]
id = "n3"
api = "127.0.0.1:18183"
peer = "127.0.0.1:17183"
TOML
}
