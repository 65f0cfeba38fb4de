#!/usr/bin/env bash
# A real partition: three members, each in its own network namespace on a bridge, and n3 cut
# off (every packet dropped by iptables inside its namespace, nothing refused) for a while
# writes go on through the others. Then the network heals; prints how long n3 takes to follow
# the leader again: ready, and applied as far as the leader had committed at the heal.
#
#   loadtest/bench-partition.sh [switchboard binary, default the release build] [rounds, default 3] [seconds cut off, default 5]
#
# Needs root (ip netns, a bridge, iptables) and the iptables package; uses 10.77.0.0/24 and
# namespaces sbp1-sbp3, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
binary="${1:-.build/release/switchboard}"
rounds="${2:-3}"
cut="${3:-5}"
root="$(mktemp -d /tmp/switchboard-partition.XXXXXX)"

cleanup() {
  for i in 1 2 3; do ip netns pids "sbp$i" 2>/dev/null | xargs -r kill -9 2>/dev/null || true; done
  sleep 0.5  # a namespace goes once its last process has exited
  for i in 1 2 3; do
    ip netns del "sbp$i" 2>/dev/null || true
    ip link del "sbv$i" 2>/dev/null || true
  done
  ip link del sbbr0 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT
cleanup 2>/dev/null || true
root="$(mktemp -d /tmp/switchboard-partition.XXXXXX)"

ip link add sbbr0 type bridge
ip addr add 10.77.0.254/24 dev sbbr0
ip link set sbbr0 up
for i in 1 2 3; do
  ip netns add "sbp$i"
  ip link add "sbv$i" type veth peer name eth0 netns "sbp$i"
  ip link set "sbv$i" master sbbr0 up
  ip netns exec "sbp$i" ip addr add "10.77.0.$i/24" dev eth0
  ip netns exec "sbp$i" ip link set eth0 up
  ip netns exec "sbp$i" ip link set lo up
done

(umask 077; head -c 24 /dev/urandom | base64 > "$root/secret"; echo partition-admin > "$root/admin")
admin="Authorization: Bearer partition-admin"
start() {
  local i="$1"; shift
  ip netns exec "sbp$i" "$binary" node --id "n$i" --data "$root/n$i" --api "10.77.0.$i:8081" --peer "10.77.0.$i:7081" \
    --secret-file "$root/secret" --admin-token-file "$root/admin" --password-memory-kib 8 "$@" >"$root/n$i.log" 2>&1 &
}
json() { python3 -c "import sys,json; v=json.load(sys.stdin)$1; print('' if v is None else v)"; }
cluster() { curl -sf -m 1 -H "$admin" "http://10.77.0.$1:8081/v1/cluster"; }

start 1 --bootstrap
for _ in $(seq 1 100); do [ "$(cluster 1 | json '["leader"]' 2>/dev/null)" = n1 ] && break; sleep 0.1; done
start 2 --join 10.77.0.1:7081
start 3 --join 10.77.0.1:7081
for _ in $(seq 1 300); do
  voters=$(cluster 1 | json '["nodes"]' 2>/dev/null | grep -o "'voter': True" | wc -l || true)
  [ "$voters" = 3 ] && break
  sleep 0.1
done
[ "${voters:-0}" = 3 ] || { echo "the cluster did not form; logs in $root" >&2; trap - EXIT; exit 1; }
echo "3 members on 10.77.0.1-3 (network namespaces sbp1-sbp3); n3 cut off for $cut s per round, writes through the others"

for round in $(seq 1 "$rounds"); do
  ip netns exec sbp3 iptables -I INPUT -j DROP
  ip netns exec sbp3 iptables -I OUTPUT -j DROP
  for n in $(seq 1 $((cut * 10))); do
    curl -sf -m 2 -X POST -H "$admin" "http://10.77.0.1:8081/v1/contacts" -d "{\"name\":\"round $round contact $n\"}" >/dev/null || true
    sleep 0.1
  done
  leader=$(cluster 1 | json '["leader"]')
  target=$(cluster "${leader#n}" | json '["commitIndex"]')
  ip netns exec sbp3 iptables -D INPUT -j DROP
  ip netns exec sbp3 iptables -D OUTPUT -j DROP
  healed=$(date +%s.%N)
  followed=""
  for _ in $(seq 1 1500); do
    ready=$(curl -s -m 0.5 "http://10.77.0.3:8081/readyz" || true)
    applied=$(echo "$ready" | json '.get("appliedIndex")' 2>/dev/null || true)
    if [ -n "$applied" ] && [ "$applied" -ge "$target" ]; then followed=$(date +%s.%N); break; fi
    sleep 0.01
  done
  if [ -n "$followed" ]; then
    python3 -c "print(f'round $round: n3 followed leader $leader to index $target {($followed - $healed) * 1000:.0f} ms after the heal')"
  else
    echo "round $round: n3 did not catch up to $target within 15 s of the heal"
  fi
  sleep 2
done
