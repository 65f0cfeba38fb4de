# Sourced by the bench scripts: the three-node cluster file, the agents every scenario uses, and
# the 3-node etcd they are measured against.
json() { python3 -c "import sys,json; print(json.load(sys.stdin)$1)"; }

# The admin token of every bench cluster (the wrk scripts read SWITCHBOARD_ADMIN_TOKEN too) and
# the header that carries it.
token="${SWITCHBOARD_ADMIN_TOKEN:-bench-admin-$$}"
export SWITCHBOARD_ADMIN_TOKEN="$token"
admin="Authorization: Bearer $token"

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

# start_leader_cluster BINARY ROOT: a fresh 3-node cluster of BINARY (data under ROOT) with the
# 20 agents; sets leader (n1-n3) and leader_api. `BINARY cluster down ROOT/cluster.toml` ends it.
start_leader_cluster() {
  local binary="$1" root="$2"
  rm -rf "$root/data"
  write_cluster_file "$root" "$token"
  "$binary" cluster up "$root/cluster.toml" >/dev/null
  leader=$(curl -sf -H "$admin" http://127.0.0.1:18181/v1/cluster | json '["leader"]')
  leader_api="http://127.0.0.1:1818${leader#n}"
  setup_agents "$leader_api"
}

# leader_writes BINARY ROOT DURATION: `start_leader_cluster`, then `wrk -t2 -c64` new customers'
# messages to its leader for DURATION seconds; prints requests/s and takes the cluster down.
# Callers run it in $(...), so their EXIT trap takes ROOT/cluster.toml down should it be
# interrupted.
leader_writes() {
  local binary="$1" root="$2" duration="$3"
  start_leader_cluster "$binary" "$root"
  wrk -t2 -c64 -d"${duration}s" -s loadtest/inbound.lua "$leader_api" | awk '/Requests\/sec/ {print $2}'
  "$binary" cluster down "$root/cluster.toml" >/dev/null
}

# follower_writes BINARY ROOT DURATION: as `leader_writes`, sent to a follower (it forwards each
# message to the leader and answers once its own copy applied it).
follower_writes() {
  local binary="$1" root="$2" duration="$3" n
  start_leader_cluster "$binary" "$root"
  for n in 1 2 3; do [ "n$n" != "$leader" ] && break; done
  wrk -t2 -c64 -d"${duration}s" -s loadtest/inbound.lua "http://127.0.0.1:1818$n" | awk '/Requests\/sec/ {print $2}'
  "$binary" cluster down "$root/cluster.toml" >/dev/null
}

# start_etcd ROOT: a 3-member etcd 3.4 on loopback (clients 12371-12373, peers 12381-12383),
# default settings (fsync on), data under ROOT/etcd-N; sets etcd_pids and etcd_leader (1-3).
# Needs etcd-server and etcd-client.
etcd_pids=()
start_etcd() {
  local root="$1" i cluster="e1=http://127.0.0.1:12381,e2=http://127.0.0.1:12382,e3=http://127.0.0.1:12383"
  rm -rf "$root"/etcd-*
  etcd_pids=()
  for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$root/etcd-$i" \
      --listen-client-urls "http://127.0.0.1:1237$i" --advertise-client-urls "http://127.0.0.1:1237$i" \
      --listen-peer-urls "http://127.0.0.1:1238$i" --initial-advertise-peer-urls "http://127.0.0.1:1238$i" \
      --initial-cluster "$cluster" --initial-cluster-state new --log-level error >"$root/etcd-$i.log" 2>&1 &
    etcd_pids+=($!)
  done
  for _ in $(seq 100); do
    ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:12371 endpoint health >/dev/null 2>&1 && break
    sleep 0.2
  done
  etcd_leader=""
  for i in 1 2 3; do
    if [ "$(ETCDCTL_API=3 etcdctl --endpoints="http://127.0.0.1:1237$i" endpoint status -w json \
          | python3 -c 'import sys,json; s=json.load(sys.stdin)[0]["Status"]; print(int(s["leader"]==s["header"]["member_id"]))')" = 1 ]; then
      etcd_leader=$i
    fi
  done
  [ -n "$etcd_leader" ] || { echo "etcd elected no leader (is etcd-client installed?)" >&2; return 1; }
}

stop_etcd() {
  local pid
  for pid in "${etcd_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${etcd_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  etcd_pids=()
}
