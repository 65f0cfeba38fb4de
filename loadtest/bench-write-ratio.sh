#!/usr/bin/env bash
# Issue 4's write ratio, measured in alternating rounds: each round gives a fresh 3-node
# Switchboard cluster `wrk -t2 -c64` new customers' messages to its leader, then a fresh 3-node
# etcd 3.4 `wrk -t2 -c64` puts to its leader, and prints both rates and their ratio; the median
# ratio comes last. One pair of runs moves by 30 % on this shared machine (etcd alone went from
# 2,329/s to 3,028/s between two runs minutes apart); rounds back to back cancel most of that.
#
#   loadtest/bench-write-ratio.sh [rounds, default 5] [seconds per run, default 10] [switchboard binary] [baseline binary]
#
# Without a binary it builds and uses this checkout's release build. With a baseline binary (an
# older build) each round also runs it, right before the binary, and prints its ratio and
# binary / baseline: a change measured against the same etcd runs.
# Needs: wrk, etcd-server, etcd-client (apt-get install wrk etcd-server etcd-client).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
duration="${2:-10}"
binary="${3:-}"
baseline="${4:-}"
if [ -z "$binary" ]; then
  swift build -c release --product switchboard >/dev/null
  binary="$(swift build -c release --show-bin-path)/switchboard"
fi
source loadtest/agents.sh

root="$(mktemp -d /tmp/switchboard-write-ratio.XXXXXX)"
cleanup() {
  [ -f "$root/cluster.toml" ] && "$binary" cluster down "$root/cluster.toml" >/dev/null 2>&1 || true
  stop_etcd
  rm -rf "$root"
}
trap cleanup EXIT

etcd_round() {
  start_etcd "$root"
  wrk -t2 -c64 -d"${duration}s" -s loadtest/etcd-put.lua "http://127.0.0.1:1237$etcd_leader" | awk '/Requests\/sec/ {print $2}'
  stop_etcd
}

echo "3-node writes to the leader, fsync on every member, wrk -t2 -c64 -d${duration}s: switchboard inbound messages/s vs etcd 3.4 puts/s"
median() { printf '%s\n' "$@" | python3 -c 'import sys; v=[float(x) for x in sys.stdin]; print(f"{sorted(v)[len(v)//2]:.2f}")'; }
ratios=(); gains=()
for round in $(seq "$rounds"); do
  [ -n "$baseline" ] && before=$(leader_writes "$baseline" "$root" "$duration")
  ours=$(leader_writes "$binary" "$root" "$duration")
  theirs=$(etcd_round)
  ratio=$(python3 -c "print(f'{$ours/$theirs:.2f}')")
  ratios+=("$ratio")
  if [ -n "$baseline" ]; then
    gain=$(python3 -c "print(f'{$ours/$before:.2f}')")
    gains+=("$gain")
    echo "round $round: switchboard $ours/s  etcd $theirs/s  ratio $ratio  (baseline $before/s, ratio $(python3 -c "print(f'{$before/$theirs:.2f}')"); switchboard / baseline $gain)"
  else
    echo "round $round: switchboard $ours/s  etcd $theirs/s  ratio $ratio"
  fi
done
echo "median ratio over $rounds rounds: $(median "${ratios[@]}")"
[ -n "$baseline" ] && echo "median switchboard / baseline: $(median "${gains[@]}")"
true
