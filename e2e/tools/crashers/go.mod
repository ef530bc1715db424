module vigil.io/e2e-tools/crashers

go 1.26.0
