#!/usr/bin/env bash
# Single-node figures for BENCHMARKS.md: inbound channel messages/s (fsync on), agent reads/s,
# and RSS with 1,000 open event WebSockets. Release build, wrk -t2 -c64, loopback.
#
#   loadtest/bench-single-node.sh [seconds per run, default 20] [switchboard binary]
#
# Without a binary it builds and uses this checkout's release build.
#
# Needs: wrk (apt-get install wrk), python3 with `websockets` (pip install websockets).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-20}"
binary="${2:-}"
port=18081
base="http://127.0.0.1:$port"
data="$(mktemp -d /tmp/switchboard-bench.XXXXXX)"
export SWITCHBOARD_ADMIN_TOKEN="bench-admin-$$"
admin="Authorization: Bearer $SWITCHBOARD_ADMIN_TOKEN"

if [ -z "$binary" ]; then
  swift build -c release --product switchboard >/dev/null
  binary="$(swift build -c release --show-bin-path)/switchboard"
fi
"$binary" node --id n1 --data "$data" --api "127.0.0.1:$port" --log-level warning --bootstrap &
node_pid=$!
trap 'kill $node_pid 2>/dev/null; wait $node_pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done

source loadtest/agents.sh
setup_agents "$base"
first_token="${tokens[0]}"

echo "== baseline: GET /healthz (no auth, no database), wrk -t2 -c64 -d${duration}s"
wrk -t2 -c64 -d"${duration}s" --latency "$base/healthz"

echo "== inbound channel messages (POST /v1/channels/whatsapp/messages, fsync on), wrk -t2 -c64 -d${duration}s"
wrk -t2 -c64 -d"${duration}s" --latency -s loadtest/inbound.lua "$base"

# Hot reads: each of the 20 agents re-reads its own 5 assigned conversations (what an agent's
# screen does on every event); these are served from rendered copies until apply changes them.
export READS_FILE="$data/reads-agents.txt"
write_agent_reads "$base" "$READS_FILE"
echo "== agent reads (GET /v1/conversations/{id}, linearizable, 20 agents x 5 conversations), wrk -t2 -c64 -d${duration}s"
wrk -t2 -c64 -d"${duration}s" --latency -s loadtest/read.lua "$base"
curl -sf "$base/metrics" | grep -E "^switchboard_conversation_view_(hits|misses|evictions)_total "

# Cold reads: 40,000 distinct conversations in turn, twice what the rendered-copy cache holds
# (20,000), so (nearly) every read runs the read transaction, the queries and the JSON rendering.
export READS_FILE="$data/reads-cold.txt"
cursor=""
for _ in $(seq 80); do
  page=$(curl -sf "$base/v1/conversations?limit=500${cursor:+&cursor=$cursor}" -H "$admin")
  echo "$page" | python3 -c "import sys,json; [print('$SWITCHBOARD_ADMIN_TOKEN', c['id']) for c in json.load(sys.stdin)['items']]" >> "$READS_FILE"
  cursor=$(echo "$page" | json '["nextCursor"] or ""')
  [ -n "$cursor" ] || break
done
echo "== cold reads (GET /v1/conversations/{id}, linearizable, $(wc -l < "$READS_FILE") distinct conversations, cache misses), wrk -t2 -c64 -d${duration}s"
wrk -t2 -c64 -d"${duration}s" --latency -s loadtest/read.lua "$base"
curl -sf "$base/metrics" | grep -E "^switchboard_conversation_view_(hits|misses|evictions)_total "

echo "== 1,000 event WebSockets"
python3 loadtest/event_sockets.py "$base" "$first_token" "$node_pid" 1000 5
curl -sf "$base/metrics" | grep -E "^switchboard_(applied_index|log_bytes|websocket_sessions) "
