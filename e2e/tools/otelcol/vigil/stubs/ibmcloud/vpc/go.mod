module go.opentelemetry.io/contrib/detectors/ibmcloud/vpc

go 1.26.0

require go.opentelemetry.io/otel/sdk v1.46.0
