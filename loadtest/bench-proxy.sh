#!/usr/bin/env bash
# Proxy throughput and added latency, side by side in one run: wrk -t2 -c64 on a cheap GET
# (/healthz) straight to one node, through `switchboard balancer`, and through HAProxy 2.6
# (Debian haproxy, round robin, keep-alive to the same three nodes, its default checks).
#
#   loadtest/bench-proxy.sh [seconds per run, default 15] [baseline switchboard binary] [rounds, default 3]
#
# After one run straight to a node, each round runs the balancer and HAProxy back to back and
# prints their ratio; the last line gives every round's ratio and the median (the shared
# machine moves by 10 % between minutes, so one pair means little).
#
# With a baseline binary (another build of switchboard), a second balancer from it runs in
# front of the same nodes (a static --backend list, port 18470) and is measured in the same
# run, so a change to the balancer is compared on the same minutes of the shared machine.
#
# Needs: wrk, haproxy (apt-get install wrk haproxy).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-15}"
baseline="${2:-}"
rounds="${3:-3}"
root="$(mktemp -d /tmp/switchboard-proxy-bench.XXXXXX)"
swift build -c release --product switchboard >/dev/null 2>&1
binary="$(swift build -c release --show-bin-path)/switchboard"
cat > "$root/cluster.toml" <<TOML
[cluster]
secret = "bench-proxy-secret"
admin_token = "bench-admin"
data = "$root/data"
[[node]]
id = "n1"
api = "127.0.0.1:18481"
peer = "127.0.0.1:17681"
gossip = "127.0.0.1:17781"
[[node]]
id = "n2"
api = "127.0.0.1:18482"
peer = "127.0.0.1:17682"
gossip = "127.0.0.1:17782"
[[node]]
id = "n3"
api = "127.0.0.1:18483"
peer = "127.0.0.1:17683"
gossip = "127.0.0.1:17783"
[balancer]
listen = "127.0.0.1:18480"
gossip = "127.0.0.1:17790"
TOML
cat > "$root/haproxy.cfg" <<CFG
global
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    timeout connect 1s
    timeout client 30s
    timeout server 30s
frontend front
    bind 127.0.0.1:18490
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk GET /readyz
    server n1 127.0.0.1:18481 check
    server n2 127.0.0.1:18482 check
    server n3 127.0.0.1:18483 check
CFG
cleanup() {
  [ -n "${haproxy_pid:-}" ] && kill "$haproxy_pid" 2>/dev/null || true
  [ -n "${baseline_pid:-}" ] && kill "$baseline_pid" 2>/dev/null || true
  "$binary" cluster down "$root/cluster.toml" >/dev/null 2>&1 || true
  rm -rf "$root"
}
trap cleanup EXIT
"$binary" cluster up "$root/cluster.toml" >/dev/null
haproxy -f "$root/haproxy.cfg" -db >/dev/null 2>&1 &
haproxy_pid=$!
if [ -n "$baseline" ]; then
  "$baseline" balancer --listen 127.0.0.1:18470 \
    --backend n1=127.0.0.1:18481 --backend n2=127.0.0.1:18482 --backend n3=127.0.0.1:18483 >"$root/baseline.log" 2>&1 &
  baseline_pid=$!
fi
sleep 6   # the balancer admits each node after two good checks and warms it up over 5 s

# CPU seconds (user + system) a process has used so far, from /proc/PID/stat.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
balancer_pid="$(pgrep -f "balancer --listen 127.0.0.1:18480" | head -1 || true)"
ticks_per_second="$(getconf CLK_TCK)"

# run NAME URL [PID]: wrk, and with PID the proxy's CPU time per request; sets `rate`.
run() {
  echo "== $1: wrk -t2 -c64 -d${duration}s GET /healthz"
  local before=0
  [ -n "${3:-}" ] && before="$(cpu_ticks "$3")"
  local out
  out="$(wrk -t2 -c64 -d"${duration}s" --latency "$2/healthz")"
  echo "$out" | grep -E "Requests/sec|Latency  |50%|99%|Non-2xx|Socket errors" || true
  rate="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
  if [ -n "${3:-}" ]; then
    local used=$(( $(cpu_ticks "$3") - before ))
    local requests
    requests="$(echo "$out" | awk '/requests in/ {print $1}')"
    awk -v t="$used" -v hz="$ticks_per_second" -v n="$requests" \
      'BEGIN { printf "    proxy CPU: %.2f s for %d requests = %.0f us per request\n", t / hz, n, t / hz / n * 1e6 }'
  fi
}
run "one node directly (n1)" http://127.0.0.1:18481
ratios=()
for round in $(seq 1 "$rounds"); do
  run "round $round: switchboard balancer (3 nodes)" http://127.0.0.1:18480 "$balancer_pid"
  ours="$rate"
  run "round $round: HAProxy 2.6 (3 nodes)" http://127.0.0.1:18490 "$haproxy_pid"
  ratio="$(awk -v a="$ours" -v b="$rate" 'BEGIN { printf "%.2f", a / b }')"
  ratios+=("$ratio")
  echo "   round $round: ours / HAProxy = $ratio"
  if [ -n "$baseline" ]; then
    run "round $round: baseline balancer ($baseline)" http://127.0.0.1:18470 "$baseline_pid"
    echo "   round $round: ours / baseline = $(awk -v a="$ours" -v b="$rate" 'BEGIN { printf "%.2f", a / b }')"
  fi
done
median="$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
echo "ours / HAProxy by round: ${ratios[*]}; median $median"
