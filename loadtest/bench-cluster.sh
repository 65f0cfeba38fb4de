#!/usr/bin/env bash
# Three-node figures for BENCHMARKS.md, in one run on this machine (release build, loopback):
#   1. write throughput: inbound channel messages/s, fsync on every member, wrk -t2 -c64, sent to
#      the leader and then to a follower (which forwards to the leader);
#   2. the same concurrency against a 3-node etcd 3.4 (Debian etcd-server) doing puts through
#      its JSON gateway, to the leader and to a follower; the ratio is ours / etcd's;
#   3. linearizable reads through one follower (ReadIndex), 20 agents x 5 conversations.
#
#   loadtest/bench-cluster.sh [seconds per run, default 20]
#
# Needs: wrk, etcd-server, etcd-client (apt-get install wrk etcd-server etcd-client).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-20}"
root="$(mktemp -d /tmp/switchboard-cluster-bench.XXXXXX)"

swift build -c release --product switchboard >/dev/null
binary="$(swift build -c release --show-bin-path)/switchboard"
source loadtest/agents.sh
cleanup() {
  "$binary" cluster down "$root/cluster.toml" >/dev/null 2>&1 || true
  stop_etcd
  rm -rf "$root"
}
trap cleanup EXIT
start_leader_cluster "$binary" "$root"
follower=$([ "$leader" = n2 ] && echo n3 || echo n2)
follower_api="http://127.0.0.1:1818${follower#n}"
echo "switchboard: leader $leader, follower $follower"

echo "== switchboard: inbound messages to the leader ($leader), 3 members fsync, wrk -t2 -c64 -d${duration}s"
wrk -t2 -c64 -d"${duration}s" --latency -s loadtest/inbound.lua "$leader_api"
echo "== switchboard: inbound messages to a follower ($follower, forwarded), wrk -t2 -c64 -d${duration}s"
wrk -t2 -c64 -d"${duration}s" --latency -s loadtest/inbound.lua "$follower_api"

export READS_FILE="$root/reads.txt"
write_agent_reads "$leader_api" "$READS_FILE"
echo "== switchboard: linearizable reads through the follower $follower (ReadIndex), 20 agents x 5 conversations, wrk -t2 -c64 -d${duration}s"
wrk -t2 -c64 -d"${duration}s" --latency -s loadtest/read.lua "$follower_api"
"$binary" cluster down "$root/cluster.toml" >/dev/null

# etcd 3.4, three members on loopback, default settings (fsync on), same concurrency.
start_etcd "$root"
etcd_follower=$([ "$etcd_leader" = 2 ] && echo 3 || echo 2)
echo "etcd: leader e$etcd_leader, follower e$etcd_follower"
echo "== etcd 3.4: puts to the leader (e$etcd_leader), 3 members fsync, wrk -t2 -c64 -d${duration}s"
wrk -t2 -c64 -d"${duration}s" --latency -s loadtest/etcd-put.lua "http://127.0.0.1:1237$etcd_leader"
echo "== etcd 3.4: puts to a follower (e$etcd_follower), wrk -t2 -c64 -d${duration}s"
wrk -t2 -c64 -d"${duration}s" --latency -s loadtest/etcd-put.lua "http://127.0.0.1:1237$etcd_follower"
