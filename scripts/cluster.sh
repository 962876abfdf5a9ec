#!/usr/bin/env bash
# Starts a local 3-node pushring cluster on 127.0.0.1 and stops it all on
# Ctrl-C. Node 1 runs the embedded NATS server (listening, with a token);
# nodes 2 and 3 use it. All nodes share one admin key.
#
#   node  MQTT   HTTP   gossip
#   n1    1883   8080   7946   (+ NATS 4222)
#   n2    1884   8081   7947
#   n3    1885   8082   7948
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin/pushring
base=${PUSHRING_CLUSTER_DIR:-./data/cluster}
mkdir -p "$base"/n1 "$base"/n2 "$base"/n3
chmod 700 "$base"
if [ ! -s "$base/admin.key" ]; then
  (umask 077; head -c 32 /dev/urandom | base64 | tr -d '=+/\n' > "$base/admin.key")
fi
admin=$(cat "$base/admin.key")

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping cluster"
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill "${pids[$i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

"$bin" --node-id n1 --data-dir "$base/n1" --admin-key "$admin" \
  --mqtt-addr 127.0.0.1:1883 --http-addr 127.0.0.1:8080 --gossip-addr 127.0.0.1:7946 \
  --nats-listen 127.0.0.1:4222 2> "$base/n1.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$base/n1/nats.token" ] && grep -q "node started" "$base/n1.log" && break; sleep 0.1; done
token=$(cat "$base/n1/nats.token")
for i in 2 3; do
  "$bin" --node-id n$i --data-dir "$base/n$i" --admin-key "$admin" \
    --mqtt-addr 127.0.0.1:$((1882 + i)) --http-addr 127.0.0.1:$((8079 + i)) --gossip-addr 127.0.0.1:$((7945 + i)) \
    --join 127.0.0.1:7946 --nats-url "nats://$token@127.0.0.1:4222" 2> "$base/n$i.log" &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 100); do grep -q "node started" "$base/n$i.log" && break; sleep 0.1; done
done
cat <<MSG
pushring cluster running (logs: $base/n*.log)
  n1: MQTT 127.0.0.1:1883  HTTP http://127.0.0.1:8080  (embedded NATS 127.0.0.1:4222)
  n2: MQTT 127.0.0.1:1884  HTTP http://127.0.0.1:8081
  n3: MQTT 127.0.0.1:1885  HTTP http://127.0.0.1:8082
admin key: $base/admin.key   (export PUSHRING_ADMIN_KEY=\$(cat $base/admin.key))
Ctrl-C stops all three.
MSG
wait -n "${pids[@]}" || true
echo "a node exited; see $base/n*.log"
