#!/usr/bin/env bash
# Two builds side by side on 3-node writes (the first step of bench-cluster.sh): for each round,
# each binary in turn gets a fresh loopback cluster, 20 available agents, and
# `wrk -t2 -c64` new customers' messages to the leader; one line per round with requests/s.
# Alternating runs cancel most of this shared machine's drift; compare ratios, not figures.
#
#   loadtest/bench-writes.sh BINARY_A BINARY_B [rounds, default 3] [seconds per run, default 10] [leader|follower]
#
# `follower` sends the messages to a follower instead, which forwards each to the leader.
#
# A binary is a `switchboard` executable, e.g. an older commit's build copied out first:
#   git stash -u; git checkout -q <commit>; swift build -c release; mkdir -p /tmp/old
#   cp .build/release/switchboard /tmp/old/; git checkout -q main; git stash pop; swift build -c release
#   loadtest/bench-writes.sh /tmp/old/switchboard .build/release/switchboard
#
# Needs: wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,16p' "$0"; exit 64; }
binaries=("$1" "$2")
rounds="${3:-3}"
duration="${4:-10}"
target="${5:-leader}"
case "$target" in leader) run=leader_writes ;; follower) run=follower_writes ;; *) echo "the target is leader or follower, got $target" >&2; exit 64 ;; esac
source loadtest/agents.sh

root="$(mktemp -d /tmp/switchboard-writes-bench.XXXXXX)"
cleanup() {
  [ -f "$root/cluster.toml" ] && "${binaries[0]}" cluster down "$root/cluster.toml" >/dev/null 2>&1 || true
  rm -rf "$root"
}
trap cleanup EXIT

echo "3-node writes to the $target, wrk -t2 -c64 -d${duration}s, requests/s: A=${binaries[0]} B=${binaries[1]}"
for round in $(seq "$rounds"); do
  a=$($run "${binaries[0]}" "$root" "$duration")
  b=$($run "${binaries[1]}" "$root" "$duration")
  echo "round $round: A $a  B $b  B/A $(python3 -c "print(f'{$b/$a:.2f}')")"
done
