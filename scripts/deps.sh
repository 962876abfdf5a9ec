#!/usr/bin/env bash
# Installs what the tests need beyond Go modules: the stock mosquitto
# clients (mosquitto_pub, mosquitto_sub). Idempotent.
set -euo pipefail
if command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq mosquitto-clients >/dev/null
