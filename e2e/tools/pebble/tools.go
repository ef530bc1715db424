//go:build tools

// Package tools pins the Pebble ACME test server that e2e/tools/install.sh
// builds into .tools/bin/pebble. Debian's pebble (2.4.0) predates ACME
// Renewal Information (RFC 9773, the renewalInfo endpoint); v2.10 serves it
// and lets the tests set the certificate lifetime through a profile. It lives
// in its own module so that its dependency versions stay out of the
// Kubernetes build in ../.
package tools

import (
	_ "github.com/letsencrypt/pebble/v2/cmd/pebble"
)
