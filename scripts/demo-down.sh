#!/usr/bin/env bash
# make demo-down: stops the local fleet of `make demo` (the operator's pod goes with the
# real node, which removes every container, mount, cgroup, bridge and rule it made) and
# removes .demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO="$PWD/.demo"
for pidfile in "$DEMO/fleet.pid"; do
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill -TERM "$(cat "$pidfile")"
        for _ in $(seq 1 60); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 1; done
    fi
done
rm -rf "$DEMO"
echo "demo stopped"
