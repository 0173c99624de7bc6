"""The local development and test environment: builds and runs a real Kubernetes control
plane, PostgreSQL, Redis and Kafka on loopback, and acts as the container runtime for our
own image. Used by `hack/up`, `hack/down`, `hack/test` and the test fixtures."""
