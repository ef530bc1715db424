//go:build tools

// Package tools pins CoreDNS, which e2e/tools/install.sh builds into
// .tools/bin/coredns for the CrossCloudDNS end-to-end tests: the kubernetes
// plugin serving a test cluster's Services from its kubeconfig, and several
// forward plugins chained with `next NXDOMAIN`. The module root is CoreDNS's
// main package (coredns.go), built with every plugin of its plugin.cfg. It
// lives in its own module so that its client-go and other dependency versions
// stay out of the Kubernetes build in ../.
package tools

import (
	_ "github.com/coredns/coredns"
)
