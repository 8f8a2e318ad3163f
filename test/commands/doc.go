// Package commands tests the commands the README and docs/tutorial.md tell
// users to type, as they type them: the Makefile's container targets (with
// recording stand-ins for docker and podman, since no Docker engine runs in
// the tests), that `make help` lists every target and the settings it will
// use, and that the `go run ./cmd/...` lines work with Go's default toolchain
// setting. The real podman path is tested by test/containers.
package commands
