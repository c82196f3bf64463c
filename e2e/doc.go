// Package e2e holds Postern's end-to-end tests. They build the postern
// binary once, run real `postern server` processes on temporary data
// directories, and reach them with real clients: the AWS SDK for Go v2,
// Python's boto3, the stock aws CLI, raw SigV4-signed HTTP requests, and
// postern's own admin commands. The tests never skip: a missing client is a
// failure that names what .ci/run must install.
//
// Run them with `go test ./e2e/` (or `make test`).
package e2e
