#!/usr/bin/env bash
# make demo-down: stops the operator and the local fleet of `make demo`, removes .demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO="$PWD/.demo"
for pidfile in "$DEMO/operator.pid" "$DEMO/fleet.pid"; do
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill -TERM "$(cat "$pidfile")"
        for _ in $(seq 1 30); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 1; done
    fi
done
rm -rf "$DEMO"
echo "demo stopped"
