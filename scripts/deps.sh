#!/usr/bin/env bash
# Installs what the tests need beyond Go modules: the stock mosquitto
# clients (mosquitto_pub, mosquitto_sub), Node.js and MQTT.js (npm, the
# version node/testdata/mqttjs/package-lock.json pins), and Chromium for
# the browser test (driven by chromedp), HAProxy for the load-balancer
# test (PROXY protocol, X-Forwarded-For). With "bench",
# also the mosquitto broker that pushbench runs as a baseline.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
want=()
command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null || want+=(mosquitto-clients)
command -v node >/dev/null && command -v npm >/dev/null || want+=(nodejs npm)
command -v chromium >/dev/null || want+=(chromium)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || want+=(haproxy)
if [ "${1:-}" = bench ] && ! [ -x /usr/sbin/mosquitto ] && ! command -v mosquitto >/dev/null; then
  want+=(mosquitto)
fi
if [ ${#want[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${want[@]}" >/dev/null
fi
js=node/testdata/mqttjs
if ! [ -d "$js/node_modules/mqtt" ] || [ "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]; then
  npm ci --prefix "$js" --no-audit --no-fund --loglevel=error
fi
