#!/usr/bin/env bash
# The client API over TLS against the same API in plain HTTP, in one run: two single-node
# clusters of one binary side by side (plain on 18281, --tls-cert/--tls-key on 18282, a P-256
# certificate), each with the 20 agents; alternating `wrk -t2 -c64` rounds of new customers'
# messages (fsync on), then of agents' conversation reads (linearizable). Keep-alive
# connections, as agents' consoles and the balancer hold them: this is the cost of the
# encryption, not of handshakes. Ratios TLS / plain per round, medians last.
#
#   loadtest/bench-tls.sh [rounds, default 3] [seconds per run, default 10] [switchboard binary]
#
# Needs: wrk and openssl (apt-get install wrk openssl).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
duration="${2:-10}"
binary="${3:-}"
if [ -z "$binary" ]; then
  swift build -c release --product switchboard >/dev/null
  binary="$(swift build -c release --show-bin-path)/switchboard"
fi
source loadtest/agents.sh
root="$(mktemp -d /tmp/switchboard-tls-bench.XXXXXX)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$root"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$root/key.pem" -out "$root/cert.pem" 2>/dev/null
chmod 600 "$root/key.pem"
"$binary" node --id plain --data "$root/plain" --api 127.0.0.1:18281 --log-level warning --bootstrap &
pids+=($!)
"$binary" node --id tls --data "$root/tls" --api 127.0.0.1:18282 --log-level warning --bootstrap \
  --tls-cert "$root/cert.pem" --tls-key "$root/key.pem" &
pids+=($!)
plain=http://127.0.0.1:18281
secure=https://127.0.0.1:18282
export CURL_CA_BUNDLE="$root/cert.pem"
for _ in $(seq 100); do curl -sf "$plain/readyz" >/dev/null && curl -sf "$secure/readyz" >/dev/null && break; sleep 0.1; done
setup_agents "$plain"; plain_tokens=("${tokens[@]}")
setup_agents "$secure"; secure_tokens=("${tokens[@]}")

rate() { wrk -t2 -c64 -d"${duration}s" -s "$1" "$2" | awk '/Requests\/sec/ {print $2}'; }
median() { printf '%s\n' "$@" | python3 -c 'import sys; v=[float(x) for x in sys.stdin]; print(f"{sorted(v)[len(v)//2]:.2f}")'; }

echo "client API, one node, wrk -t2 -c64 -d${duration}s, keep-alive: HTTPS (TLS 1.3, P-256) vs plain HTTP, alternating"
writes=()
for round in $(seq "$rounds"); do
  a=$(rate loadtest/inbound.lua "$plain"); b=$(rate loadtest/inbound.lua "$secure")
  r=$(python3 -c "print(f'{$b/$a:.2f}')"); writes+=("$r")
  echo "writes round $round: plain $a/s  tls $b/s  tls/plain $r"
done
tokens=("${plain_tokens[@]}"); write_agent_reads "$plain" "$root/plain-reads"
tokens=("${secure_tokens[@]}"); write_agent_reads "$secure" "$root/tls-reads"
reads=()
for round in $(seq "$rounds"); do
  a=$(READS_FILE="$root/plain-reads" rate loadtest/read.lua "$plain"); b=$(READS_FILE="$root/tls-reads" rate loadtest/read.lua "$secure")
  r=$(python3 -c "print(f'{$b/$a:.2f}')"); reads+=("$r")
  echo "reads round $round: plain $a/s  tls $b/s  tls/plain $r"
done
echo "median tls/plain: writes $(median "${writes[@]}"), reads $(median "${reads[@]}")"
