// Package keyless holds the end-to-end tests of keyless SSH (issue 3):
// a network namespace plays the instance, with a real OpenSSH sshd whose
// AuthorizedKeysCommand is `postern authorized-keys` and an agent
// registered through an activation; the server and the clients run in the
// root namespace and reach the instance over a veth pair. The tests build
// the postern binary, need root, and never skip: a missing tool is a
// failure that names what .ci/run must install. The one exception is the
// browser test (browser_test.go), which skips on a machine without
// Chromium, node or e2e/browser's npm packages, except under CI (the CI
// variable, which .ci/run sets), where that too is a failure.
//
// Run them with `go test ./e2e/keyless/` (or `make test`).
package keyless
