#!/bin/sh
. "$(dirname "$0")/common.sh"
trap '' TERM
echo "[2024-01-01 00:00:00.000][1][info][main] fake envoy ignoring SIGTERM"
while true; do sleep 0.05; done
