// Command apidoc writes docs/api.md, the API reference, from the protos.
//
// It reads a FileDescriptorSet with source info (what `buf build -o
// FILE.binpb` writes for rpc/proto) and prints every service with its
// methods, then every message with its fields and every enum with its
// values, each with the comments of the .proto files. `make docs` runs
// it; the output is committed, and a test fails when it is stale.
//
//	cd rpc && buf build -o ../tmp/agora.binpb
//	go run ./tools/apidoc -in tmp/agora.binpb -out docs/api.md
package main
