#!/bin/sh
trap '' TERM  # before common.sh writes the pid file: a test signals as soon as it sees it
. "$(dirname "$0")/common.sh"
echo "[2024-01-01 00:00:00.000][1][info][main] fake envoy ignoring SIGTERM"
while true; do sleep 0.05; done
