#!/usr/bin/env bash
# Latency of requests a follower serves on an idle 3-node cluster, one at a time: a new
# customer's message posted through a follower (forwarded to the leader, answered once the
# follower applied it), and a `?minIndex=` read on a follower right after a write to the leader
# (read-your-writes across nodes). 60 of each, 37-50 ms apart; prints p50, p90 and the worst.
#
#   loadtest/bench-follower-latency.sh [switchboard binary, default this checkout's release build]
#
# Needs: python3.
set -euo pipefail
cd "$(dirname "$0")/.."
binary="${1:-}"
if [ -z "$binary" ]; then
  swift build -c release --product switchboard >/dev/null
  binary="$(swift build -c release --show-bin-path)/switchboard"
fi
token="bench-admin-$$"; export SWITCHBOARD_ADMIN_TOKEN="$token"; admin="Authorization: Bearer $token"
source loadtest/agents.sh
root="$(mktemp -d /tmp/switchboard-follower-latency.XXXXXX)"
trap '"$binary" cluster down "$root/cluster.toml" >/dev/null 2>&1 || true; rm -rf "$root"' EXIT
start_leader_cluster "$binary" "$root"
follower=""
for n in 1 2 3; do [ "n$n" != "$leader" ] && follower="n$n" && break; done
python3 - "1818${leader#n}" "1818${follower#n}" "$token" "$follower" <<'PY'
import http.client, json, sys, time
leader, follower, token, name = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
to_leader = http.client.HTTPConnection("127.0.0.1", int(leader))
to_follower = http.client.HTTPConnection("127.0.0.1", int(follower))

def post(connection, sender, external):
    body = json.dumps({"from": sender, "text": "hello", "externalId": external})
    connection.request("POST", "/v1/channels/sms/messages", body, headers)
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 202, answer.status
    return answer.getheader("X-Switchboard-Index")

def summary(name, times):
    times.sort()
    print(f"{name}: p50 {times[len(times) // 2]:.1f} ms, p90 {times[len(times) * 9 // 10]:.1f} ms, worst {times[-1]:.1f} ms ({len(times)} requests)")

stamp = time.time()
forwarded = []
for i in range(60):
    start = time.perf_counter()
    post(to_follower, "+1666%07d" % i, f"latency-fw-{stamp}-{i}")
    forwarded.append((time.perf_counter() - start) * 1000)
    time.sleep(0.037)
summary(f"write through follower {name}", forwarded)

reads = []
for i in range(60):
    index = post(to_leader, "+1777%07d" % i, f"latency-mi-{stamp}-{i}")
    start = time.perf_counter()
    to_follower.request("GET", f"/v1/conversations?consistency=local&limit=1&minIndex={index}", headers=headers)
    answer = to_follower.getresponse()
    answer.read()
    assert answer.status == 200, answer.status
    assert int(answer.getheader("X-Switchboard-Index")) >= int(index)
    reads.append((time.perf_counter() - start) * 1000)
    time.sleep(0.05)
summary(f"?minIndex= read on follower {name} after a write to the leader", reads)
PY
