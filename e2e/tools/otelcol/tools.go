//go:build tools

// Package tools pins the OpenTelemetry Collector Builder (ocb) that
// e2e/tools/install.sh builds into .tools/bin/ocb. The Collectors themselves
// are described by vigil.yaml and backend.yaml, which ocb turns into
// .tools/bin/otelcol-vigil and .tools/bin/otelcol-backend.
package tools

import (
	_ "go.opentelemetry.io/collector/cmd/builder"
)
