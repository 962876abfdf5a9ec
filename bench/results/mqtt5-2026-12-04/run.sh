#!/usr/bin/env bash
# The measurements of this directory, from the repository's root:
#   bench/results/mqtt5-2026-12-04/run.sh BIN [ROUNDS]
# BIN holds pushbench and pushring. Each round runs the suite's fan-out
# entries (one group of 1,000 members, one device publishing as fast as
# it can, 64-byte payloads) once with MQTT 3.1.1 clients and once with
# MQTT 5.0 clients (--mqtt5), alternating which goes first, at QoS 0 and
# QoS 1; each invocation is 3 runs of 4 s after a 1 s warmup.
# table.py prints the 5.0/3.1.1 ratios of the pairs.
set -euo pipefail
bin=$1 rounds=${2:-4}
out=$(dirname "$0")
common=(--scenario fanout --groups 1 --members 1000 --devices 1 --rate 0 --runs 3 --payload 64 --warmup 1s --duration 4s)
bench() { # NAME ARGS...
  local name=$1
  shift
  echo "== $name $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)" >&2
  "$bin/pushbench" --start-pushring "$bin/pushring" "$@" --json "$out/$name.json" > "$out/$name.txt" 2> "$out/$name.log" ||
    echo "== $name FAILED" >&2
}
for r in $(seq 1 "$rounds"); do
  order="v311 v5"
  [ $((r % 2)) = 0 ] && order="v5 v311"
  for q in 0 1; do
    drain=2s
    [ $q = 0 ] && drain=1s
    for v in $order; do
      flag=()
      [ $v = v5 ] && flag=(--mqtt5)
      bench "q$q-$r-$v" "${common[@]}" --qos $q --drain $drain "${flag[@]}"
    done
  done
done
