// Package realservices is agora's real-services test tier: real stateful
// software (Redis, a NATS JetStream cluster) deployed by `agora service`
// from the specs in examples/services, on a dev cluster of 3 masters and
// real agents in the test's process, then hurt (a task SIGKILLed, an agent
// killed and restarted, the leader master killed) while a client checks
// that what the software acknowledged survives.
//
// It is its own module so that its client libraries (github.com/nats-io/
// nats.go) stay out of the root module and the agora binary, and so that
// the root `go test ./...` does not run it. Run it with `make
// test-services` (or `cd realservices && go test -count=1 -v ./...`). It
// needs nats-server and redis-server on PATH (Debian: apt-get install
// nats-server redis-server); a test whose binary is missing skips with a
// message starting "!!! real-services tier SKIPPED:".
package realservices
