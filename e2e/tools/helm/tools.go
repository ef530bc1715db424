//go:build tools

// Package tools pins the Helm 3 client that e2e/tools/install.sh builds into
// .tools/bin/helm. It lives in its own module because Helm v3.22 is built
// against the k8s.io v0.37 libraries, while ../go.mod must pin every k8s.io
// staging module to v0.36.3 for kube-apiserver v1.36.3.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
