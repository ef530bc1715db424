//go:build tools

// Package tools pins Thanos, which e2e/tools/install.sh builds into .tools/bin/thanos
// for the Thanos Ruler test (e2e/tests/alerting.rs): Vigil's rule files with
// `ruler: thanos` evaluated by a real Thanos Ruler against a real Prometheus. v0.42.4 is
// the newest v0.42 whose go.mod accepts Go 1.26.0 (v0.42.5 asks for 1.26.10). The
// replace lines are upstream's own (replaces of a dependency are not applied to the
// module that requires it); install.sh builds with upstream's release tags
// netgo,slicelabels (pkg/store/labelpb casts labels through slices).
package tools

import (
	_ "github.com/thanos-io/thanos/cmd/thanos"
)
