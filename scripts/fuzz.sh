#!/usr/bin/env bash
# libFuzzer on every decoder of network and disk bytes (Sources/FuzzTargets).
#
#   scripts/fuzz.sh [runs per target] [target...]      e.g. scripts/fuzz.sh 2000000 raft-message
#
# Builds the pure modules and scripts/fuzz/main.swift with `swiftc -sanitize=fuzzer,address`
# into .build-fuzz/ (about 2 minutes the first time), seeds each target's corpus with its valid
# encodings, fuzzes it for the given number of executions, and merges what libFuzzer found
# interesting into Tests/FuzzTargetsTests/corpus/<target>/ (minimized), which the test command
# replays. A crash leaves its input in .build-fuzz/crash-<target>-*; copy it into the corpus
# once fixed, so it stays fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-1000000}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(raft-message raft-payload raft-snapshot cluster-frame swim-packet command outcome)
fi
out=.build-fuzz
mkdir -p "$out/modules"

build_module() { # name dependencies...
  local name="$1"
  echo "fuzz: compiling $name" >&2
  swiftc -parse-as-library -O -g -sanitize=fuzzer,address -module-name "$name" -wmo \
    -I "$out/modules" -emit-module -emit-module-path "$out/modules/$name.swiftmodule" \
    -c -o "$out/$name.o" Sources/"$name"/*.swift
}
if [ ! -x "$out/switchboard-fuzz" ] || [ -n "$(find Sources/Seeded Sources/RaftCore Sources/Wire Sources/RaftWire Sources/SWIMCore Sources/ContactCenter Sources/FuzzTargets scripts/fuzz -newer "$out/switchboard-fuzz" -name '*.swift' | head -1)" ]; then
  build_module Seeded
  build_module RaftCore
  build_module Wire
  build_module RaftWire
  build_module SWIMCore
  build_module ContactCenter
  build_module FuzzTargets
  echo "fuzz: linking" >&2
  # (gold warns about every sanitizer helper it cannot export; the warnings go to a log)
  swiftc -parse-as-library -O -g -sanitize=fuzzer,address -I "$out/modules" scripts/fuzz/main.swift \
    "$out"/RaftCore.o "$out"/Wire.o "$out"/SWIMCore.o "$out"/ContactCenter.o "$out"/FuzzTargets.o "$out"/RaftWire.o "$out"/Seeded.o -o "$out/switchboard-fuzz" 2>"$out/link.log" \
    || { cat "$out/link.log" >&2; exit 1; }
fi

for target in "${targets[@]}"; do
  work="$out/corpus-$target"
  keep="Tests/FuzzTargetsTests/corpus/$target"
  mkdir -p "$work" "$keep"
  cp -n "$keep"/* "$work"/ 2>/dev/null || true
  SWITCHBOARD_FUZZ_SEEDS_INTO="$work" SWITCHBOARD_FUZZ_TARGET="$target" "$out/switchboard-fuzz" -runs=0 "$work" >/dev/null 2>&1 || true
  echo "fuzz: $target, $runs executions" >&2
  start=$(date +%s)
  SWITCHBOARD_FUZZ_TARGET="$target" "$out/switchboard-fuzz" -runs="$runs" -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="$out/crash-$target-" "$work" 2>"$out/fuzz-$target.log" || {
      echo "fuzz: $target FAILED; see $out/fuzz-$target.log and $out/crash-$target-*" >&2
      tail -30 "$out/fuzz-$target.log" >&2
      exit 1
    }
  seconds=$(( $(date +%s) - start ))
  executed=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/fuzz-$target.log" | grep -o '[0-9]*$')
  coverage=$(grep -o 'cov: [0-9]*' "$out/fuzz-$target.log" | tail -1 | grep -o '[0-9]*$')
  rm -rf "$keep.new" && mkdir -p "$keep.new"
  SWITCHBOARD_FUZZ_TARGET="$target" "$out/switchboard-fuzz" -merge=1 "$keep.new" "$work" >/dev/null 2>&1
  rm -rf "$keep" && mv "$keep.new" "$keep"
  echo "fuzz: $target: $executed executions in ${seconds}s, no crash; coverage $coverage edges; corpus $(ls "$keep" | wc -l) inputs"
done
