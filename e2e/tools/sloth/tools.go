//go:build tools

// Package tools pins Sloth, the SLO generator users would pick instead of Vigil's SLO
// rules. `PEERS=1 e2e/tools/install.sh` (run by `make bench-peers`, not by `make test`)
// builds it into .tools/bin/sloth for the side-by-side benchmark (scripts/bench-peers.sh).
package tools

import (
	_ "github.com/slok/sloth/cmd/sloth"
)
