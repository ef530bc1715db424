// Package vultr stands in for go.opentelemetry.io/contrib/detectors/vultr, which the
// Go module proxy of the workplace that builds otelcol-vigil does not serve at the
// version resource_detection v0.161.0 requires. Vigil never generates this detector;
// the stand-in lets the rest of resource_detection build, and fails if it is used.
package vultr

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/sdk/resource"
)

// NewResourceDetector returns a detector that always fails: it is not built.
func NewResourceDetector() resource.Detector { return notBuilt{} }

type notBuilt struct{}

func (notBuilt) Detect(context.Context) (*resource.Resource, error) {
	return nil, errors.New("the vultr detector is not built into otelcol-vigil")
}
