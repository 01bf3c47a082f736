#!/bin/sh
. "$(dirname "$0")/common.sh"
trap 'echo terminated >> "$dir/fake-envoy.events"; exit 0' TERM
echo "[2024-01-01 00:00:00.000][1][info][main] fake envoy started"
while true; do sleep 0.05; done
