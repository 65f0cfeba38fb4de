#!/usr/bin/env bash
# CPU per write, build against build: for each binary in turn (repeat a binary to alternate), a
# fresh 3-node cluster, 20 available agents and `wrk -t2 -c64` new customers' messages to the
# leader; prints requests/s and the CPU time (user + system, from /proc) the leader and one
# follower spent per request over the run.
#
# On a shared machine requests/s of the same build move by 20 % from run to run; CPU per request
# moves far less, so a change of a few percent shows here first. Compare builds side by side.
#
#   loadtest/bench-cpu.sh SECONDS BINARY [BINARY...]
#   loadtest/bench-cpu.sh 10 /tmp/old/switchboard .build/release/switchboard /tmp/old/switchboard .build/release/switchboard
#
# Needs: wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
duration="$1"; shift
source loadtest/agents.sh
ticks=$(getconf CLK_TCK)
root="$(mktemp -d /tmp/switchboard-bench-cpu.XXXXXX)"
binary=""
cleanup() {
  [ -n "$binary" ] && [ -f "$root/cluster.toml" ] && "$binary" cluster down "$root/cluster.toml" >/dev/null 2>&1 || true
  rm -rf "$root"
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "3-node writes to the leader, wrk -t2 -c64 -d${duration}s: requests/s, CPU us per request (leader, one follower)"
for binary in "$@"; do
  start_leader_cluster "$binary" "$root"
  leader_pid=$(pgrep -f " node --id $leader ")
  follower_pid=$(pgrep -f " node --id n" | grep -vx "$leader_pid" | head -1)
  leader_before=$(cpu_ticks "$leader_pid"); follower_before=$(cpu_ticks "$follower_pid")
  out=$(wrk -t2 -c64 -d"${duration}s" -s loadtest/inbound.lua "$leader_api")
  leader_after=$(cpu_ticks "$leader_pid"); follower_after=$(cpu_ticks "$follower_pid")
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rate=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  echo "$binary: $rate/s  leader $(( (leader_after - leader_before) * 1000000 / ticks / requests )) us  follower $(( (follower_after - follower_before) * 1000000 / ticks / requests )) us"
  "$binary" cluster down "$root/cluster.toml" >/dev/null
done
