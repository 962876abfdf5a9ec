#!/usr/bin/env bash
# The standard pushbench suite that `make bench` runs (bench/README.md):
# every entry against a pushring node the harness starts and the two
# baselines (mosquitto, the NATS server's MQTT), medians of alternating
# runs. Writes OUT/<entry>.json (machine, command, results) and .txt (the
# table) per entry, then OUT/report.html with all of them.
#
#   bench/suite.sh [OUT]            # OUT defaults to bench/results/latest
#
# Sizes and durations can be lowered for a quick check of the suite itself:
#   MEMBERS=200 USERS=300 CLIENTS=1000 RUNS=1 DURATION=2s bench/suite.sh /tmp/suite
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results/latest}
BIN=${BIN:-bin}
MEMBERS=${MEMBERS:-1000}   # fanout: one group of MEMBERS
USERS=${USERS:-2000}       # direct: USERS users, 4 senders
CLIENTS=${CLIENTS:-15000}  # idle
RUNS=${RUNS:-3}            # runs of each fanout and direct entry (idle: 1)
DURATION=${DURATION:-5s}   # measured window (after a 1 s warmup)
DRAIN=${DRAIN:-3s}         # longest wait for late deliveries

entries=()
failed=()
mkdir -p "$out"
t0=$SECONDS

# run NAME ARGS...: one pushbench run into $out/NAME.{json,txt}.
run() {
  local name=$1 start=$SECONDS
  shift
  rm -f "$out/$name.json" "$out/$name.txt"
  echo "== $name: pushbench $*" >&2
  if "$BIN/pushbench" --start-pushring "$BIN/pushring" --baseline mosquitto,nats "$@" \
      --json "$out/$name.json" | tee "$out/$name.txt"; then
    entries+=("$out/$name.json")
  else
    failed+=("$name")
    [ -s "$out/$name.json" ] && entries+=("$out/$name.json")
  fi
  echo "== $name: $((SECONDS - start)) s" >&2
}

common=(--payload 64 --warmup 1s --duration "$DURATION" --drain "$DRAIN")
run fanout-qos0-max   --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 0 --rate 0 --runs "$RUNS" "${common[@]}"
run fanout-qos1-max   --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 1 --rate 0 --runs "$RUNS" "${common[@]}"
run fanout-qos0-20mps --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 0 --rate 20 --runs "$RUNS" "${common[@]}"
run direct-qos0-max   --scenario direct --users "$USERS" --senders 4 --qos 0 --rate 0 --runs "$RUNS" "${common[@]}"
run direct-qos1-max   --scenario direct --users "$USERS" --senders 4 --qos 1 --rate 0 --runs "$RUNS" "${common[@]}"
run idle              --scenario idle --clients "$CLIENTS" --qos 0 --runs 1

if [ ${#entries[@]} -gt 0 ]; then
  "$BIN/pushreport" -o "$out/report.html" -title "pushbench suite ($(date -u +%Y-%m-%d))" "${entries[@]}" || failed+=(report)
fi
echo "suite: $((SECONDS - t0)) s, ${#entries[@]} entries in $out${failed[*]:+, FAILED: ${failed[*]}}" >&2
[ ${#failed[@]} -eq 0 ]
