//go:build tools

// Package tools pins Jaeger v1.75.0, whose cmd/jaeger is the Jaeger v2.12.0 binary
// (built on the OpenTelemetry Collector), which e2e/tools/install.sh builds into
// .tools/bin/jaeger for the traces test of the VMware gateway: OTLP in, the query
// API out. The replace line is upstream's own.
package tools

import (
	_ "github.com/jaegertracing/jaeger/cmd/jaeger"
)
