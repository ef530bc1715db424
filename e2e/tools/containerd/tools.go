//go:build tools

// Package tools pins containerd, its runc shim and ctr, that e2e/tools/install.sh
// builds into .tools/bin/ for the real node of the end-to-end clusters (the
// kubelet is built from ../go.mod, with the other Kubernetes programs).
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
