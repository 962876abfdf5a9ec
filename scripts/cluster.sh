#!/usr/bin/env bash
# Starts a local 3-node pushring cluster on 127.0.0.1 and stops it all on
# Ctrl-C (or SIGTERM). Every secret lives in a file under the cluster dir,
# none on a command line (every local user can read those):
#
#   admin.key              the admin key, shared by the three nodes
#   gossip.key             the gossip key (encrypts and authenticates gossip)
#   n<i>/nats.nk           node i's own NATS nkey seed
#   nats-authorized-keys   the public nkeys n1's embedded NATS lets in
#   tls/                   a throwaway CA and server certificate (pushctl dev-cert)
#
#   node  MQTT   HTTP   gossip  MQTT/TLS  HTTPS
#   n1    1883   8080   7946    8883      8443   (+ NATS 4222)
#   n2    1884   8081   7947    8884      8444
#   n3    1885   8082   7948    8885      8445
#
# PUSHRING_CLUSTER_DIR moves the state (default ./data/cluster);
# PUSHRING_CLUSTER_PORT_OFFSET adds to every port (tests run beside a
# cluster of yours); BIN names the directory of pushring and pushctl.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-./bin}
bin=$BIN/pushring
ctl=$BIN/pushctl
base=${PUSHRING_CLUSTER_DIR:-./data/cluster}
off=${PUSHRING_CLUSTER_PORT_OFFSET:-0}
port() { echo $(($1 + off)); }
mkdir -p "$base"/n1 "$base"/n2 "$base"/n3
chmod 700 "$base"
[ -s "$base/admin.key" ] || (umask 077; head -c 32 /dev/urandom | base64 | tr -d "=+/\n" > "$base/admin.key")
[ -s "$base/gossip.key" ] || "$ctl" gossip-key --out "$base/gossip.key"
[ -s "$base/tls/server.pem" ] || "$ctl" dev-cert --dir "$base" > /dev/null
# NATS: each node signs in with its own nkey; n1's embedded server lets in
# the keys listed here, made before the start.
: > "$base/nats-authorized-keys"
for i in 2 3; do
  echo "n$i $("$ctl" nats-key "$base/n$i/nats.nk")" >> "$base/nats-authorized-keys"
done

pids=()
stop() {
  # A second Ctrl-C (or TERM) while stopping must not kill this script
  # before its nodes: they would be left running.
  trap '' INT TERM
  trap - EXIT
  echo "stopping cluster"
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill "${pids[$i]}" 2>/dev/null || true; done
  # Each node by its pid, until it is gone and reaped: a bare wait run
  # from this trap can return before the nodes have exited (seen under
  # load), and the script would end with its nodes still running.
  for p in "${pids[@]}"; do
    while kill -0 "$p" 2>/dev/null; do wait "$p" 2>/dev/null || sleep 0.1; done
  done
}
trap stop INT TERM EXIT

# node I [FLAGS...]: starts node nI on its ports, logging to nI.log.
node() {
  local i=$1
  shift
  "$bin" --node-id "n$i" --data-dir "$base/n$i" --admin-key-file "$base/admin.key" \
    --gossip-key-file "$base/gossip.key" \
    --tls-cert "$base/tls/server.pem" --tls-key "$base/tls/server.key" --client-ca "$base/tls/ca.pem" \
    --mqtt-addr "127.0.0.1:$(port $((1882 + i)))" --http-addr "127.0.0.1:$(port $((8079 + i)))" \
    --gossip-addr "127.0.0.1:$(port $((7945 + i)))" \
    --mqtt-tls-addr "127.0.0.1:$(port $((8882 + i)))" --https-addr "127.0.0.1:$(port $((8442 + i)))" \
    "$@" 2> "$base/n$i.log" &
  pids+=($!)
}
node 1 --nats-listen "127.0.0.1:$(port 4222)" --nats-authorized-keys-file "$base/nats-authorized-keys"
for _ in $(seq 100); do grep -qs "node started" "$base/n1.log" && break; sleep 0.1; done
for i in 2 3; do
  node "$i" --join "127.0.0.1:$(port 7946)" --nats-url "nats://127.0.0.1:$(port 4222)"
done
for i in 1 2 3; do
  for _ in $(seq 100); do grep -qs "node started" "$base/n$i.log" && break; sleep 0.1; done
done
cat <<MSG
pushring cluster running (logs: $base/n*.log; pids ${pids[*]})
  n1: MQTT 127.0.0.1:$(port 1883)  TLS $(port 8883)  HTTP http://127.0.0.1:$(port 8080)  https://127.0.0.1:$(port 8443)  (embedded NATS 127.0.0.1:$(port 4222))
  n2: MQTT 127.0.0.1:$(port 1884)  TLS $(port 8884)  HTTP http://127.0.0.1:$(port 8081)  https://127.0.0.1:$(port 8444)
  n3: MQTT 127.0.0.1:$(port 1885)  TLS $(port 8885)  HTTP http://127.0.0.1:$(port 8082)  https://127.0.0.1:$(port 8445)
admin key: $base/admin.key   (export PUSHRING_ADMIN_KEY_FILE=$base/admin.key)
TLS CA:    $base/tls/ca.pem  (mosquitto_sub --cafile, pushctl --cacert)
gossip key $base/gossip.key: rotate by editing it and kill -HUP each node (SECURITY.md)
Ctrl-C stops all three.
MSG
wait -n "${pids[@]}" || true
echo "a node exited; see $base/n*.log"
