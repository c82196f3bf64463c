//go:build !linux

package tunnel

import "syscall"

// waitReadable returns at once: the caller's Read does the waiting, with
// its buffer held.
func waitReadable(syscall.RawConn) error { return nil }
