//go:build tools

// Package tools pins the CNCF Distribution registry that e2e/tools/install.sh builds
// into .tools/bin/registry: the OCI registry on loopback that the end-to-end tests push
// the packaged chart to (`helm push oci://...`) and install it from.
package tools

import (
	_ "github.com/distribution/distribution/v3/cmd/registry"
)
