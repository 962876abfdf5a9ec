#!/usr/bin/env bash
# The measurements of this directory, from the repository's root:
#   bench/results/speed-2026-12-04/run.sh NEW_BIN OLD_BIN [ROUNDS]
# NEW_BIN holds pushbench and pushring of the build under test, OLD_BIN a
# pushring built before durable QoS 1 (d0cc1e6: `git worktree add /tmp/old
# d0cc1e6 && (cd /tmp/old && go build -o bin/ ./cmd/pushring)`). Each
# round runs, with the suite's parameters of the direct entries:
#   q1-R       direct QoS 1, pushring against mosquitto-persist
#   q1p-R      the same with persistent sessions (--persistent) on both
#   q0-R-new   direct QoS 0, NEW_BIN's pushring against mosquitto
#   q0-R-old   the same with OLD_BIN's pushring
# the two QoS 0 builds alternating which goes first.
set -euo pipefail
new=$1 old=$2 rounds=${3:-4}
out=$(dirname "$0")
common=(--payload 64 --warmup 1s --duration 4s)
direct=(--scenario direct --users 2000 --senders 4 --rate 0 --runs 3)
bench() { # NAME PUSHRING ARGS...
  local name=$1 bin=$2
  shift 2
  echo "== $name $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)" >&2
  "$new/pushbench" --start-pushring "$bin" "$@" --json "$out/$name.json" > "$out/$name.txt" 2> "$out/$name.log" ||
    echo "== $name FAILED" >&2
}
for r in $(seq 1 "$rounds"); do
  bench "q1-$r" "$new/pushring" --baseline mosquitto-persist "${direct[@]}" --qos 1 "${common[@]}" --drain 2s
  bench "q1p-$r" "$new/pushring" --baseline mosquitto-persist "${direct[@]}" --qos 1 --persistent "${common[@]}" --drain 2s
  order="new old"
  [ $((r % 2)) = 0 ] && order="old new"
  for b in $order; do
    bin=$new/pushring
    [ $b = old ] && bin=$old/pushring
    bench "q0-$r-$b" "$bin" --baseline mosquitto "${direct[@]}" --qos 0 "${common[@]}" --drain 1s
  done
done
