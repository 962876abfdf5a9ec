#!/usr/bin/env bash
# Runs every Go fuzz target in the module for the given time each.
# Usage: scripts/fuzz.sh 10s
set -euo pipefail
fuzztime=${1:-10s}
cd "$(dirname "$0")/.."
status=0
for file in $(grep -rl --include='*_test.go' '^func Fuzz' .); do
  pkg=./$(dirname "${file#./}")
  for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //'); do
    echo "fuzz: $pkg $target ($fuzztime)"
    run() { go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" -fuzzminimizetime=2s "$pkg" >/tmp/pushring-fuzz.log 2>&1; }
    # The fuzzing coordinator sometimes ends a short run with "context
    # deadline exceeded" while minimising a new input, with no failing
    # input found: that is the toolchain, not our code; run it again, up
    # to three times in all (it has come twice in a row on a busy machine).
    for attempt in 1 2 3; do
      if run; then
        break
      fi
      if [ $attempt -lt 3 ] && grep -q "context deadline exceeded" /tmp/pushring-fuzz.log && ! grep -q "Failing input" /tmp/pushring-fuzz.log; then
        continue
      fi
      cat /tmp/pushring-fuzz.log
      status=1
      break
    done
  done
done
exit $status
