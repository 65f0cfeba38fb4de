#!/usr/bin/env bash
# The hand mutation checks of BENCHMARKS.md ("One replica driver for the node and the
# simulator"), repeatable: each mutation is a known bug put into Sources/RaftDriver/
# ReplicaDriver.swift; the script builds (debug), runs `switchboard simulate --seeds 300` with 3
# and 5 members, prints the first failing seeds, and puts the file back (also on Ctrl-C).
# A mutation that no seed catches prints "failures=0": that is a gap in the simulator.
#
#   scripts/driver-mutations.sh            # all of them (about 2 minutes each)
#   scripts/driver-mutations.sh 2 5        # some of them
set -euo pipefail
cd "$(dirname "$0")/.."
file=Sources/RaftDriver/ReplicaDriver.swift
backup=$(mktemp)
cp "$file" "$backup"
trap 'cp "$backup" "$file"; rm -f "$backup"' EXIT

mutate() {
  python3 - "$file" "$1" <<'PY'
import sys
path, number = sys.argv[1], sys.argv[2]
source = open(path).read()
mutations = {
    "1": ("every role sends and applies before persisting (the leader's order for followers too)",
          "            if core.role == .leader, ready.snapshot == nil {",
          "            if ready.snapshot == nil {"),
    "2": ("waiters that must see their entry answered at execution",
          "                guard waiter.early else { return false }\n", ""),
    "3": ("commit fan-out and answers before the state machine's commit",
          "        try machine.commitExecuted()\n        let done = uncommitted",
          "        defer { try? machine.commitExecuted() }\n        let done = uncommitted"),
    "4": ("a late waiter answered from memory once its entry is executed, though it must see it",
          "        if index <= (early ? executedThrough : appliedThrough) {",
          "        if index <= executedThrough {"),
    "5": ("a follower acknowledges (and votes) before its fsync",
          "                try log.persist(ready)                                        // 1. persist (fsync)\n"
          "                for message in ready.messages { transport.send(message) }    // 2. send",
          "                for message in ready.messages { transport.send(message) }    // 2. send\n"
          "                try log.persist(ready)                                        // 1. persist (fsync)"),
    "6": ("read contexts count from 1 on every start",
          "        nextReadContext = firstReadContext",
          "        nextReadContext = 1"),
}
if number not in mutations:
    sys.exit(f"no mutation {number}; there are {', '.join(sorted(mutations))}")
title, before, after = mutations[number]
if source.count(before) != 1:
    sys.exit(f"mutation {number} no longer applies: its anchor is not in {path} exactly once")
open(path, "w").write(source.replace(before, after))
print(f"mutation {number}: {title}")
PY
}

numbers=("$@")
[ ${#numbers[@]} -eq 0 ] && numbers=(1 2 3 4 5 6)
for number in "${numbers[@]}"; do
  cp "$backup" "$file"
  mutate "$number"
  swift build --product switchboard 2>&1 | grep -E "error:" && exit 1
  for members in 3 5; do
    echo "  $members members:"
    .build/debug/switchboard simulate --seeds 300 --nodes "$members" 2>&1 | grep -E "^FAIL|failures=|Precondition" | head -3 | cut -c1-240 | sed 's/^/    /' || true
  done
done
