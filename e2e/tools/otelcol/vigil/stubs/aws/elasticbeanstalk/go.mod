module go.opentelemetry.io/contrib/detectors/aws/elasticbeanstalk

go 1.26.0

require go.opentelemetry.io/otel/sdk v1.46.0
