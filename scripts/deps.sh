#!/usr/bin/env bash
# Installs what the tests need beyond Go modules: the stock mosquitto
# clients (mosquitto_pub, mosquitto_sub). With "bench", also the mosquitto
# broker that pushbench runs as a baseline. Idempotent.
set -euo pipefail
want=(mosquitto-clients)
command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null && want=()
if [ "${1:-}" = bench ] && ! [ -x /usr/sbin/mosquitto ] && ! command -v mosquitto >/dev/null; then
  want+=(mosquitto)
fi
[ ${#want[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${want[@]}" >/dev/null
