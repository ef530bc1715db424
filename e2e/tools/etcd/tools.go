//go:build tools

// Package tools pins the etcd server that e2e/tools/install.sh builds into
// .tools/bin/etcd. It lives in its own module so that etcd's dependency
// versions (grpc, otel, ...) do not leak into the Kubernetes build in ../.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
