#!/usr/bin/env bash
# The standard pushbench suite that `make bench` runs (bench/README.md):
# every entry against a pushring node the harness starts and the two
# baselines (mosquitto, the NATS server's MQTT), the QoS 1 entries also
# against mosquitto with persistence on (mosquitto-persist), medians of
# alternating runs. Writes OUT/<entry>.json (machine, command, results) and .txt (the
# table) per entry, then OUT/report.html with all of them.
#
#   bench/suite.sh [OUT]            # OUT defaults to bench/results/latest
#
# Sizes and durations can be lowered for a quick check of the suite itself,
# and ONLY picks entries by name:
#   MEMBERS=200 USERS=300 CLIENTS=1000 CLIENTS_TLS=1000 CHAOS_MEMBERS=50 RUNS=1 DURATION=2s bench/suite.sh /tmp/suite
#   ONLY="churn cluster" bench/suite.sh /tmp/suite
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results/latest}
BIN=${BIN:-bin}
MEMBERS=${MEMBERS:-1000}   # fanout: one group of MEMBERS
USERS=${USERS:-2000}       # direct: USERS users, 4 senders
CLIENTS=${CLIENTS:-15000}  # idle
CLIENTS_TLS=${CLIENTS_TLS:-10000}  # idle-tls
RUNS=${RUNS:-3}            # runs of each fanout and direct entry (idle, churn, cluster, chaos: 1)
CHAOS_MEMBERS=${CHAOS_MEMBERS:-300}  # chaos: persistent members of its one group
BURST_RUNS=${BURST_RUNS:-6}  # runs of the burst entry: its spread (min, max) is the point
DURATION=${DURATION:-4s}   # measured window (after a 1 s warmup)
DRAIN=${DRAIN:-2s}         # longest wait for late deliveries (QoS 0 at max rate: 1 s, see README)
ONLY=${ONLY:-}             # space-separated entry names; empty: all

entries=()
failed=()
mkdir -p "$out"
t0=$SECONDS

# run NAME ARGS...: one pushbench run into $out/NAME.{json,txt}.
run() {
  local name=$1 start=$SECONDS
  shift
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then
    return
  fi
  rm -f "$out/$name.json" "$out/$name.txt"
  echo "== $name: pushbench $*" >&2
  if "$BIN/pushbench" --start-pushring "$BIN/pushring" "$@" \
      --json "$out/$name.json" | tee "$out/$name.txt"; then
    entries+=("$out/$name.json")
  else
    failed+=("$name")
    [ -s "$out/$name.json" ] && entries+=("$out/$name.json")
  fi
  echo "== $name: $((SECONDS - start)) s" >&2
}

base=(--baseline mosquitto,nats)
# QoS 1 is durable on pushring (stored before PUBACK): mosquitto with
# persistence on is its durable counterpart, next to plain mosquitto.
base1=(--baseline mosquitto,mosquitto-persist,nats)
common=(--payload 64 --warmup 1s --duration "$DURATION")
# Open-loop QoS 0 at max rate overloads every server: what is still queued
# after publishing stops counts as lost whatever the drain, so wait 1 s only.
overload=(--drain 1s)
run fanout-qos0-max   "${base[@]}" --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 0 --rate 0 --runs "$RUNS" "${common[@]}" "${overload[@]}"
run fanout-qos1-max   "${base1[@]}" --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 1 --rate 0 --runs "$RUNS" "${common[@]}" --drain "$DRAIN"
run fanout-qos0-20mps "${base[@]}" --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 0 --rate 20 --runs "$RUNS" "${common[@]}" --drain "$DRAIN"
run direct-qos0-max   "${base[@]}" --scenario direct --users "$USERS" --senders 4 --qos 0 --rate 0 --runs "$RUNS" "${common[@]}" "${overload[@]}"
run direct-qos1-max   "${base1[@]}" --scenario direct --users "$USERS" --senders 4 --qos 1 --rate 0 --runs "$RUNS" "${common[@]}" --drain "$DRAIN"
# A burst: 500 QoS 0 messages at once into one group of MEMBERS, from the
# first send to the last delivery, BURST_RUNS times; the table gives the
# median and the lowest and highest deliveries/s over the runs.
run fanout-burst-qos0 "${base[@]}" --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 0 --messages 500 --runs "$BURST_RUNS" --payload 64 --drain 10s
run idle              "${base[@]}" --scenario idle --clients "$CLIENTS" --qos 0 --runs 1
run churn             "${base[@]}" --scenario churn --users 50 --workers 16 --warmup 1s --duration "$DURATION" --runs 1
# MQTT over TLS (--tls: a throwaway CA per run, every client verifies the
# server's certificate), against mosquitto's TLS listener; the same sizes
# as the plain entries above, so the two can be read side by side.
tlsbase=(--tls --baseline mosquitto)
run fanout-qos0-max-tls "${tlsbase[@]}" --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 0 --rate 0 --runs "$RUNS" "${common[@]}" "${overload[@]}"
run fanout-qos1-max-tls "${tlsbase[@]}" --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 1 --rate 0 --runs "$RUNS" "${common[@]}" --drain "$DRAIN"
run idle-tls            "${tlsbase[@]}" --scenario idle --clients "$CLIENTS_TLS" --qos 0 --runs 1
# MQTT over WebSocket (pushring's /mqtt), against mosquitto's websockets
# listener and the NATS server's; idle at 10,000 clients with the HTTP
# connection cap lifted (it counts WebSocket connections).
wsbase=(--ws --baseline mosquitto,nats)
run fanout-qos1-max-ws  "${wsbase[@]}" --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 1 --rate 0 --runs "$RUNS" "${common[@]}" --drain "$DRAIN"
run idle-ws             --ws --pushring-args "--http-max-conns -1" --scenario idle --clients 10000 --qos 0 --runs 1
# Its plain TCP counterpart, the same clients (the budget: 3 KiB each).
run idle-10k            "${base[@]}" --scenario idle --clients 10000 --qos 0 --runs 1
# MQTT 5.0 clients on every system that speaks it (mosquitto; the NATS
# server has no 5.0): compare with fanout-qos1-max and fanout-qos0-max,
# the same entries at 3.1.1.
v5base=(--mqtt5 --baseline mosquitto)
run fanout-qos1-max-mqtt5 "${v5base[@]}" --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 1 --rate 0 --runs "$RUNS" "${common[@]}" --drain "$DRAIN"
run fanout-qos0-max-mqtt5 "${v5base[@]}" --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 0 --rate 0 --runs "$RUNS" "${common[@]}" "${overload[@]}"
# QoS 2 end to end (publisher and members at QoS 2) against mosquitto.
run fanout-qos2-max --baseline mosquitto --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 2 --rate 0 --runs "$RUNS" "${common[@]}" --drain "$DRAIN"
# Rule topics (--topic-rules): the group is one plain topic its members
# subscribe to, as on the baseline; compare with fanout-qos1-max and
# fanout-qos0-max (pushring's groups).
run fanout-qos1-max-topics --rule-topics --baseline mosquitto --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 1 --rate 0 --runs "$RUNS" "${common[@]}" --drain "$DRAIN"
run fanout-qos0-max-topics --rule-topics --baseline mosquitto --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 0 --rate 0 --runs "$RUNS" "${common[@]}" "${overload[@]}"
# Webhooks (pushring only): the same node with no receiver and with a
# dead one (accepts connections, never answers), two rows side by side
# in one invocation, their order alternating over the runs; both groups
# have 50 more members that never connect, so every message makes 50
# message.offline events, which the dead receiver's bounded queue drops.
# The promise: no slower fan-out. At max rate (throughput) and at 200
# msgs/s (latency at a rate the node keeps up with; the queue is full
# within the warmup).
hook=(--webhook none,dead --offline-members 50)
run fanout-hook-dead        "${hook[@]}" --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 0 --rate 0 --runs "$RUNS" "${common[@]}" "${overload[@]}"
run fanout-hook-dead-200mps "${hook[@]}" --scenario fanout --groups 1 --members "$MEMBERS" --devices 1 --qos 0 --rate 200 --runs "$RUNS" "${common[@]}" --drain "$DRAIN"
# pushring only: one node, then 3 nodes, the same fanout (the baselines' fanout is above).
run cluster           --scenario cluster --nodes 3 --groups 1 --members "$MEMBERS" --devices 1 --qos 1 --rate 0 --runs 1 "${common[@]}" --drain "$DRAIN"
# Not a speed row: 3 nodes on 3 NATS servers (R3), 300 persistent members,
# QoS 1 group (40/s) and direct (20/s) traffic for 60 s while the default
# fault schedule kills -9, SIGTERMs, SIGSTOPs and restarts nodes and the
# JetStream meta leader; lost, duplicates and out of order per fault
# window. One run, about 90 s (setup, traffic, the wait for late deliveries).
run chaos             --scenario chaos --nodes 3 --members "$CHAOS_MEMBERS"

if [ ${#entries[@]} -gt 0 ]; then
  "$BIN/pushreport" -o "$out/report.html" -title "pushbench suite ($(date -u +%Y-%m-%d))" "${entries[@]}" || failed+=(report)
fi
echo "suite: $((SECONDS - t0)) s, ${#entries[@]} entries in $out${failed[*]:+, FAILED: ${failed[*]}}" >&2
[ ${#failed[@]} -eq 0 ]
