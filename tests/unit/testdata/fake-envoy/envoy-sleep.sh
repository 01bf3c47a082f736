#!/bin/sh
trap 'early=1' TERM  # a SIGTERM while starting up still counts (the agent may stop at once)
. "$(dirname "$0")/common.sh"
trap 'echo terminated >> "$dir/fake-envoy.events"; exit 0' TERM
if [ -n "${early:-}" ]; then echo terminated >> "$dir/fake-envoy.events"; exit 0; fi
echo "[2024-01-01 00:00:00.000][1][info][main] fake envoy started"
while true; do sleep 0.05; done
