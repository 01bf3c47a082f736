#!/bin/sh
. "$(dirname "$0")/common.sh"
echo "[2024-01-01 00:00:00.000][1][info][main] starting fake envoy"
echo "[2024-01-01 00:00:00.001][1][critical][main] error initializing configuration: fake failure"
echo "fake envoy: giving up"
exit 1
